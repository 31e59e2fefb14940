//! What the hub sends: each message is JSON-encoded once, when it is posted, and every
//! answer is made of those bytes. A `Frame` is a cheaply cloned, shared UTF-8 buffer: the
//! same bytes serve as a long-poll body and as a WebSocket text frame.

use std::sync::Arc;

use bytes::Bytes;
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

/// A long-poll answer. Several entries are not joined into one buffer: the answer is
/// written out from the bytes each entry already has, so a thousand polls answered from
/// the whole cache share its bytes instead of copying it a thousand times.
#[derive(Debug)]
pub enum Batch {
    Frame(Frame),
    Entries {
        entries: Vec<Arc<Entry>>,
        reset: bool,
    },
}

impl Batch {
    pub fn of(entries: Vec<Arc<Entry>>, reset: bool) -> Self {
        match (entries.as_slice(), reset) {
            ([only], false) => Self::Frame(only.frame.clone()),
            _ => Self::Entries { entries, reset },
        }
    }

    /// Its length in bytes.
    pub fn byte_len(&self) -> usize {
        match self {
            Self::Frame(frame) => frame.len(),
            Self::Entries { entries, reset } => {
                let json: usize = entries.iter().map(|e| e.json.len()).sum();
                OPEN.len() + json + entries.len().saturating_sub(1) + close(*reset).len()
            }
        }
    }

    /// Its bytes, in pieces that share the entries' own.
    pub fn into_pieces(self) -> Pieces {
        let (entries, reset, frame) = match self {
            Self::Frame(frame) => (Vec::new(), false, Some(frame.into_bytes())),
            Self::Entries { entries, reset } => (entries, reset, None),
        };
        Pieces {
            frame,
            entries: entries.into_iter(),
            reset,
            opened: false,
            any: false,
            after_comma: None,
            closed: false,
        }
    }
}

#[cfg(test)]
impl Batch {
    /// The whole answer as text.
    pub fn text(self) -> String {
        String::from_utf8(self.into_pieces().flatten().collect()).expect("UTF-8")
    }
}

const OPEN: &str = r#"{"messages":["#;

fn close(reset: bool) -> &'static str {
    if reset {
        r#"],"reset":true}"#
    } else {
        "]}"
    }
}

/// The pieces of a [`Batch`], in order.
pub struct Pieces {
    frame: Option<Bytes>,
    entries: std::vec::IntoIter<Arc<Entry>>,
    reset: bool,
    opened: bool,
    /// Whether an entry has gone: every later one follows a comma.
    any: bool,
    /// The next entry, once its comma has gone.
    after_comma: Option<Bytes>,
    closed: bool,
}

impl Iterator for Pieces {
    type Item = Bytes;

    fn next(&mut self) -> Option<Bytes> {
        if self.closed {
            return None;
        }
        if let Some(frame) = self.frame.take() {
            self.closed = true;
            return Some(frame);
        }
        if !self.opened {
            self.opened = true;
            return Some(Bytes::from_static(OPEN.as_bytes()));
        }
        if let Some(entry) = self.after_comma.take() {
            return Some(entry);
        }
        let Some(entry) = self.entries.next() else {
            self.closed = true;
            return Some(Bytes::from_static(close(self.reset).as_bytes()));
        };
        let json = entry.json.as_bytes().clone();
        if std::mem::replace(&mut self.any, true) {
            self.after_comma = Some(json);
            Some(Bytes::from_static(b","))
        } else {
            Some(json)
        }
    }
}

/// A batch of messages, oldest first, as one frame (a WebSocket's replay).
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

    /// A poll's answer in pieces is, byte for byte, the batch in one frame.
    #[test]
    fn a_batch_in_pieces_is_the_batch() {
        let entries = [entry(1, "a"), entry(2, "b \"q\""), entry(3, "c")];
        for n in 0..=3 {
            for reset in [false, true] {
                let whole = batch(&entries[..n], reset);
                let answer = Batch::of(entries[..n].to_vec(), reset);
                assert_eq!(answer.byte_len(), whole.len(), "{n} entries, reset {reset}");
                let joined: Vec<u8> = answer.into_pieces().flatten().collect();
                assert_eq!(
                    joined,
                    whole.as_bytes().to_vec(),
                    "{n} entries, reset {reset}"
                );
            }
        }
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
