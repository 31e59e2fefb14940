//! The room's data: who may post (`UserName`), what may be posted (`MessageBody`), and the
//! message as clients see it. Input becomes these types at the edge; past it, they are valid.

use rand::Rng;
use serde::Serialize;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum InputError {
    #[error("a name is 1 to 32 ASCII letters, digits, spaces, '-' or '_'")]
    BadName,
    #[error("the message is empty")]
    EmptyBody,
    #[error("the message is longer than {max} characters")]
    BodyTooLong { max: usize },
}

/// A display name: 1 to 32 ASCII letters, digits, space, `-`, `_`.
#[derive(Debug, Clone, PartialEq, Eq)]
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

/// A message as every client receives it; field order is the wire order.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Message {
    /// A UUID: safe in an HTML `id` (after the `m` prefix) and in a CSS selector.
    pub id: String,
    pub from: String,
    pub body: String,
    /// Rendered from `templates/message.html`.
    pub html: String,
}

/// Whether `target` may be redirected to: a path on this site. One leading `/` (not `//`
/// or `/\`, which browsers read as another host) and no control characters.
pub fn is_local_path(target: &str) -> bool {
    let bytes = target.as_bytes();
    bytes.first() == Some(&b'/')
        && !matches!(bytes.get(1), Some(b'/' | b'\\'))
        && !target.chars().any(char::is_control)
}

pub fn new_message_id() -> String {
    uuid::Uuid::new_v4().hyphenated().to_string()
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
            assert!(is_local_path(good), "{good:?}");
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
            assert!(!is_local_path(bad), "{bad:?}");
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
