//! The room's data: who may post (`UserName`), what may be posted (`MessageBody`), where a
//! client stands (`Cursor`), where it may be sent (`LocalPath`), and the message as clients
//! see it. Input becomes these types at the edge; past it, they are valid.

use std::fmt;

use rand::Rng;
use serde::{Deserialize, Serialize, Serializer};

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum InputError {
    #[error("a name is 1 to 32 ASCII letters, digits, spaces, '-' or '_'")]
    BadName,
    #[error("the message is empty")]
    EmptyBody,
    #[error("the message is longer than {max} characters")]
    BodyTooLong { max: usize },
    #[error("next must be a local path")]
    NotLocalPath,
}

/// A display name: 1 to 32 ASCII letters, digits, space, `-`, `_`. Checked whenever one is
/// read, from a query string or from a login cookie.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(try_from = "String")]
pub struct UserName(String);

impl UserName {
    pub const MAX_LEN: usize = 32;

    pub fn parse(raw: &str) -> Result<Self, InputError> {
        let allowed = |c: char| c.is_ascii_alphanumeric() || matches!(c, ' ' | '-' | '_');
        if (1..=Self::MAX_LEN).contains(&raw.len()) && raw.chars().all(allowed) {
            Ok(Self(raw.to_owned()))
        } else {
            Err(InputError::BadName)
        }
    }

    /// A made-up user for the fake login: `user-` and six digits.
    pub fn random() -> Self {
        Self(format!(
            "user-{:06}",
            rand::rng().random_range(0..1_000_000)
        ))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for UserName {
    type Error = InputError;
    fn try_from(raw: String) -> Result<Self, InputError> {
        Self::parse(&raw)
    }
}

/// A message text after clean-up: CRLF and lone CR become LF, other C0 controls except
/// tab and LF become spaces, surrounding white space is trimmed; 1..=max characters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MessageBody(String);

impl MessageBody {
    pub fn parse(raw: &str, max_chars: usize) -> Result<Self, InputError> {
        let mut text = String::with_capacity(raw.len());
        let mut chars = raw.chars().peekable();
        while let Some(c) = chars.next() {
            match c {
                '\r' => {
                    // CRLF collapses to one LF; a lone CR is a line break too.
                    if chars.peek() == Some(&'\n') {
                        chars.next();
                    }
                    text.push('\n');
                }
                '\t' | '\n' => text.push(c),
                c if (c as u32) < 0x20 => text.push(' '),
                c => text.push(c),
            }
        }
        let trimmed = text.trim();
        if trimmed.is_empty() {
            return Err(InputError::EmptyBody);
        }
        if trimmed.chars().count() > max_chars {
            return Err(InputError::BodyTooLong { max: max_chars });
        }
        Ok(Self(trimmed.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A message's id: a UUID, safe in an HTML `id` (after the `m` prefix) and in a CSS selector.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct MessageId(String);

impl MessageId {
    pub fn new() -> Self {
        Self(uuid::Uuid::new_v4().hyphenated().to_string())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl Default for MessageId {
    fn default() -> Self {
        Self::new()
    }
}

/// Where a client stands in the room: the id of the newest message it has (or the room's
/// origin, for a page rendered while the room was empty). Opaque to clients; the long poll
/// and the WebSocket read it the same way. An empty value is no cursor at all.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Cursor(String);

impl Cursor {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl From<String> for Cursor {
    fn from(raw: String) -> Self {
        Self(raw)
    }
}

impl From<&MessageId> for Cursor {
    fn from(id: &MessageId) -> Self {
        Self(id.0.clone())
    }
}

/// A redirect target on this site: one leading `/` (not `//` or `/\`, which browsers read
/// as another host) and no control characters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalPath(String);

impl LocalPath {
    pub fn parse(target: &str) -> Result<Self, InputError> {
        let bytes = target.as_bytes();
        let local = bytes.first() == Some(&b'/')
            && !matches!(bytes.get(1), Some(b'/' | b'\\'))
            && !target.chars().any(char::is_control);
        if local {
            Ok(Self(target.to_owned()))
        } else {
            Err(InputError::NotLocalPath)
        }
    }

    pub fn root() -> Self {
        Self("/".to_owned())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for LocalPath {
    type Error = InputError;
    fn try_from(raw: String) -> Result<Self, InputError> {
        Self::parse(&raw)
    }
}

/// A message as every client receives it; field order is the wire order.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Message {
    pub id: MessageId,
    pub from: UserName,
    pub body: MessageBody,
    /// Rendered from `templates/message.html`.
    pub html: String,
}

#[cfg(test)]
impl Message {
    /// A message with a chosen id, for unit tests of code that treats ids as opaque.
    pub(crate) fn for_test(id: &str, body: &str) -> Self {
        Self {
            id: MessageId(id.to_owned()),
            from: UserName("Ann".to_owned()),
            body: MessageBody(body.to_owned()),
            html: format!("<div>{body}</div>"),
        }
    }
}

// On the wire and in logs each of these is its plain string.
macro_rules! plain_string {
    ($($name:ty),*) => {$(
        impl Serialize for $name {
            fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                serializer.serialize_str(self.as_str())
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }
    )*};
}
plain_string!(UserName, MessageId);

impl Serialize for MessageBody {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_the_allowed_alphabet() {
        for good in ["a", "Alice Smith", "user-123456", "x_y", &"n".repeat(32)] {
            assert!(UserName::parse(good).is_ok(), "{good:?}");
        }
        for bad in ["", "Zoë", "a<b", "a/b", "tab\there", &"n".repeat(33)] {
            assert_eq!(UserName::parse(bad), Err(InputError::BadName), "{bad:?}");
        }
    }

    #[test]
    fn only_local_paths_are_redirect_targets() {
        for good in ["/", "/a/b?c=d#e", "/a//b", "/a\\b"] {
            assert!(LocalPath::parse(good).is_ok(), "{good:?}");
        }
        for bad in [
            "",
            "a",
            "//evil.example",
            "/\\evil.example",
            "https://evil.example",
            "/\tx",
            "/a\nb",
            "/a\u{85}",
        ] {
            assert_eq!(
                LocalPath::parse(bad),
                Err(InputError::NotLocalPath),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn random_names_are_user_and_six_digits() {
        let name = UserName::random();
        let digits = name.as_str().strip_prefix("user-").unwrap();
        assert_eq!(digits.len(), 6);
        assert!(digits.chars().all(|c| c.is_ascii_digit()));
    }

    #[test]
    fn body_clean_up_normalises_line_breaks_and_controls() {
        let body = MessageBody::parse("  a\r\nb\rc\u{1}d\te\u{7f}  ", 100).unwrap();
        assert_eq!(body.as_str(), "a\nb\nc d\te\u{7f}");
    }

    #[test]
    fn blank_bodies_are_empty() {
        for raw in ["", "   ", "\r\n\t", "\u{0}\u{1}"] {
            assert_eq!(
                MessageBody::parse(raw, 10),
                Err(InputError::EmptyBody),
                "{raw:?}"
            );
        }
    }

    #[test]
    fn length_counts_characters_after_clean_up() {
        assert!(MessageBody::parse(&"é".repeat(5), 5).is_ok());
        assert!(MessageBody::parse(&format!("  {}  ", "x".repeat(5)), 5).is_ok());
        assert_eq!(
            MessageBody::parse(&"é".repeat(6), 5),
            Err(InputError::BodyTooLong { max: 5 })
        );
    }
}
