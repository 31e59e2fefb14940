//! What the hub sends: each message is JSON-encoded once, when it is posted, and every
//! answer is made of those bytes. A `Frame` is a cheaply cloned, shared UTF-8 buffer: the
//! same bytes serve as a long-poll body and as a WebSocket text frame.

use std::sync::Arc;

use bytestring::ByteString;

use crate::domain::Message;

/// A long-poll answer or WebSocket text frame: `{"messages":[...]}` (plus `"reset":true`).
pub type Frame = ByteString;

/// A cached message with its encodings.
#[derive(Debug)]
pub struct Entry {
    pub message: Message,
    /// The message as JSON: the body of the POST reply.
    pub json: ByteString,
    /// `{"messages":[json]}`: what every waiting receiver gets when it is posted.
    pub frame: Frame,
}

impl Entry {
    pub fn new(message: Message) -> Self {
        // A struct of strings always serialises.
        let json = serde_json::to_string(&message).expect("a message serialises to JSON");
        let frame = format!(r#"{{"messages":[{json}]}}"#);
        Self {
            message,
            json: json.into(),
            frame: frame.into(),
        }
    }
}

/// The answer with no messages: a held poll that timed out, or the server shutting down.
pub fn empty() -> Frame {
    ByteString::from_static(r#"{"messages":[]}"#)
}

/// A batch of messages, oldest first.
pub fn batch(entries: &[Arc<Entry>], reset: bool) -> Frame {
    if let ([only], false) = (entries, reset) {
        return only.frame.clone();
    }
    let len: usize = entries.iter().map(|e| e.json.len() + 1).sum();
    let mut out = String::with_capacity(len + 32);
    out.push_str(r#"{"messages":["#);
    for (i, entry) in entries.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str(&entry.json);
    }
    out.push(']');
    if reset {
        out.push_str(r#","reset":true"#);
    }
    out.push('}');
    out.into()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{MessageId, Position};

    fn entry(seq: u64, body: &str) -> Arc<Entry> {
        let epoch = crate::domain::Epoch::parse("e1").unwrap();
        let id = MessageId::new(&epoch, Position { ms: 1, seq });
        Arc::new(Entry::new(Message::for_test(&id, body)))
    }

    #[test]
    fn message_json_keeps_the_wire_key_order() {
        let e = entry(1, "hi \"there\"");
        assert_eq!(
            &*e.json,
            r#"{"id":"e1-1-1","from":"Ann","body":"hi \"there\"","html":"<div>hi \"there\"</div>","time":"1970-01-01T00:00:00.001Z","kind":"message"}"#
        );
    }

    #[test]
    fn batches_are_valid_json_with_reset_flag() {
        let entries = [entry(1, "a"), entry(2, "b")];
        let value: serde_json::Value = serde_json::from_str(&batch(&entries, true)).unwrap();
        assert_eq!(value["messages"].as_array().unwrap().len(), 2);
        assert_eq!(value["messages"][1]["id"], "e1-1-2");
        assert_eq!(value["reset"], true);
        let single: serde_json::Value = serde_json::from_str(&batch(&entries[..1], false)).unwrap();
        assert_eq!(single["messages"][0]["body"], "a");
        assert!(single.get("reset").is_none());
        assert_eq!(&*empty(), r#"{"messages":[]}"#);
    }
}
