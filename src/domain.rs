//! The room's data: who may post (`UserName`), what may be posted (`MessageBody`), where a
//! client stands (`Cursor`), where it may be sent (`LocalPath`), and the message as clients
//! see it. Input becomes these types at the edge; past it, they are valid.

use std::fmt;
use std::sync::Arc;

use bytestring::ByteString;
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
    #[error("Idempotency-Key is 1 to 64 ASCII letters, digits, '-' or '_'")]
    BadIdempotencyKey,
}

/// A display name: 1 to 32 ASCII letters, digits, space, `-`, `_`, with no space at either
/// end and none next to another, so " Ann" cannot pass for "Ann" and "   " is no name.
/// Read from a query string or a login cookie, the text is folded to that form first
/// (trimmed, runs of spaces made one) and then checked. Shared, not copied: a login's name
/// is kept by its presence, its sockets and its notices.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(try_from = "String")]
pub struct UserName(Arc<str>);

impl UserName {
    pub const MAX_LEN: usize = 32;

    pub fn parse(raw: &str) -> Result<Self, InputError> {
        let allowed = |c: char| c.is_ascii_alphanumeric() || matches!(c, ' ' | '-' | '_');
        if !raw.chars().all(allowed) {
            return Err(InputError::BadName);
        }
        let folded = raw
            .split(' ')
            .filter(|word| !word.is_empty())
            .collect::<Vec<_>>();
        let folded = folded.join(" ");
        if (1..=Self::MAX_LEN).contains(&folded.len()) {
            Ok(Self(folded.into()))
        } else {
            Err(InputError::BadName)
        }
    }

    /// A made-up user for the fake login: `user-` and six digits.
    pub fn random() -> Self {
        Self(format!("user-{:06}", rand::rng().random_range(0..1_000_000)).into())
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
                // Bidi embeddings, overrides and isolates can make a text read otherwise
                // than it is ("exe.png" that is "gnp.exe"): they are dropped.
                '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}' => {}
                c => text.push(c),
            }
        }
        let trimmed = text.trim();
        // Zero-width characters stay inside a visible text (they join emoji), but a body of
        // nothing else is an empty message.
        if trimmed
            .chars()
            .all(|c| c.is_whitespace() || is_zero_width(c))
        {
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

/// Where an entry sits in the room's log: `ms-seq`, the shape of a Redis stream id, made by
/// the store (Redis, or the in-memory room the same way). Positions only grow.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Position {
    pub ms: u64,
    pub seq: u64,
}

impl Position {
    /// Before every entry: where a client that has seen nothing of this epoch stands.
    pub const ORIGIN: Self = Self { ms: 0, seq: 0 };

    /// The position after `self` for an entry made at `now_ms` (as Redis makes stream ids).
    pub fn next(self, now_ms: u64) -> Self {
        if now_ms > self.ms {
            Self { ms: now_ms, seq: 0 }
        } else {
            Self {
                ms: self.ms,
                seq: self.seq + 1,
            }
        }
    }

    /// `ms-seq`, as Redis writes it.
    pub fn parse(text: &str) -> Option<Self> {
        let (ms, seq) = text.split_once('-')?;
        let number = |t: &str| {
            (!t.is_empty() && t.bytes().all(|b| b.is_ascii_digit()))
                .then(|| t.parse().ok())
                .flatten()
        };
        Some(Self {
            ms: number(ms)?,
            seq: number(seq)?,
        })
    }
}

impl fmt::Display for Position {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.ms, self.seq)
    }
}

/// A post's number on this instance, which goes into the log with it: when the log brings
/// the entry back, the hub knows whose it is and answers that poster first (see `room`).
/// Only this instance's own entries carry one back (the Redis store tags each entry with
/// its instance and keeps the numbers of its own).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Ticket(pub u64);

impl Ticket {
    /// A number no other post of this process has had.
    pub fn next() -> Self {
        static COUNTER: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        Self(COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed))
    }
}

/// One life of the room's log: random, made when the log starts (a new process for the
/// memory store; a new or emptied Redis). Positions from another epoch mean nothing here.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Epoch(String);

impl Epoch {
    pub fn random() -> Self {
        Self(format!("{:012x}", rand::rng().random::<u64>() >> 16))
    }

    /// 1 to 32 lowercase hex digits.
    pub fn parse(text: &str) -> Option<Self> {
        Self::is_valid(text).then(|| Self(text.to_owned()))
    }

    fn is_valid(text: &str) -> bool {
        (1..=32).contains(&text.len())
            && text
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Characters that take no room: zero-width space, non-joiner, joiner, word joiner, BOM.
fn is_zero_width(c: char) -> bool {
    matches!(c, '\u{200B}'..='\u{200D}' | '\u{2060}' | '\u{FEFF}')
}

/// A message's id: `{epoch}-{ms}-{seq}`. Letters, digits and `-` only, so it is safe in an
/// HTML `id` (after the `m` prefix) and in a CSS selector. Clients treat it as opaque.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct MessageId {
    text: String,
    epoch: Epoch,
    position: Position,
}

impl MessageId {
    pub fn new(epoch: &Epoch, position: Position) -> Self {
        Self {
            text: format!("{}-{position}", epoch.as_str()),
            epoch: epoch.clone(),
            position,
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        let (epoch, position) = Self::split(text)?;
        Some(Self::new(&Epoch(epoch.to_owned()), position))
    }

    /// An id's epoch (as text) and position, without making anything: the hub compares
    /// every poll's cursor with this.
    fn split(text: &str) -> Option<(&str, Position)> {
        let (epoch, position) = text.split_once('-')?;
        Some((epoch, Position::parse(position)?)).filter(|_| Epoch::is_valid(epoch))
    }

    pub fn epoch(&self) -> &Epoch {
        &self.epoch
    }

    pub fn position(&self) -> Position {
        self.position
    }

    pub fn as_str(&self) -> &str {
        &self.text
    }
}

/// Where a client stands in the room: the id of the newest message it has (or the origin of
/// an epoch, for a page rendered while the room was empty). The long poll and the WebSocket
/// read it the same way. An empty value is no cursor at all; anything that is not an id is
/// a cursor the room does not know.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Cursor(String);

impl Cursor {
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// A cursor the room does not know: answered with the whole cache and `reset`.
    pub fn unknown() -> Self {
        Self(String::new())
    }

    /// The id this cursor names, if it is one.
    pub fn id(&self) -> Option<MessageId> {
        MessageId::parse(&self.0)
    }

    /// Where in `epoch` this cursor stands, if it names an id of that epoch (no
    /// allocation: it is asked twice per poll).
    pub fn position_in(&self, epoch: &Epoch) -> Option<Position> {
        MessageId::split(&self.0)
            .filter(|(e, _)| *e == epoch.as_str())
            .map(|(_, position)| position)
    }
}

impl From<String> for Cursor {
    fn from(raw: String) -> Self {
        Self(raw)
    }
}

impl From<&MessageId> for Cursor {
    fn from(id: &MessageId) -> Self {
        Self(id.text.clone())
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

/// What makes a post a repeat of an earlier one by the same login: the `Idempotency-Key`
/// header of an HTTP post, or the `nonce` of a socket frame (one namespace, so a post
/// first tried over the socket and resent over HTTP is still the same post).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct PostKey(String);

impl PostKey {
    pub const MAX_CHARS: usize = 64;

    /// The header: 1 to 64 of `A-Z a-z 0-9 - _`.
    pub fn from_header(raw: &str) -> Result<Self, InputError> {
        let allowed = |b: u8| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_');
        if (1..=Self::MAX_CHARS).contains(&raw.len()) && raw.bytes().all(allowed) {
            Ok(Self(raw.to_owned()))
        } else {
            Err(InputError::BadIdempotencyKey)
        }
    }

    /// A socket frame's nonce, any text the client chose (checked for length by the
    /// socket).
    pub fn from_nonce(nonce: &str) -> Self {
        Self(nonce.to_owned())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// When the room accepted an entry: milliseconds since the Unix epoch, UTC. It is the
/// millisecond part of the entry's position, so it comes from the store (Redis's clock
/// with Redis) and every instance shows the same time, never decreasing in room order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Timestamp(u64);

impl Timestamp {
    pub fn of(id: &MessageId) -> Self {
        Self(id.position().ms)
    }

    pub fn from_unix_millis(ms: u64) -> Self {
        Self(ms)
    }

    /// This machine's clock now.
    pub fn now() -> Self {
        Self(
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_millis() as u64),
        )
    }

    pub fn unix_millis(self) -> u64 {
        self.0
    }

    /// RFC 3339 in UTC with milliseconds: `2026-11-30T17:40:01.123Z`.
    pub fn rfc3339(self) -> String {
        let (date, ms_of_day) = (self.0 / 86_400_000, self.0 % 86_400_000);
        let (year, month, day) = civil_from_days(date);
        let secs = ms_of_day / 1000;
        format!(
            "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
            secs / 3600,
            secs / 60 % 60,
            secs % 60,
            ms_of_day % 1000
        )
    }

    /// `HH:MM` in UTC, for the markup (the page's script shows the reader's local time).
    pub fn clock(self) -> String {
        let minutes = self.0 % 86_400_000 / 60_000;
        format!("{:02}:{:02}", minutes / 60, minutes % 60)
    }
}

/// The date of a day count since 1970-01-01 (Howard Hinnant's `civil_from_days`).
fn civil_from_days(days: u64) -> (u64, u64, u64) {
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + u64::from(month <= 2);
    (year, month, day)
}

impl Serialize for Timestamp {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.rfc3339())
    }
}

fn as_str<S: Serializer>(text: &ByteString, to: S) -> Result<S::Ok, S::Error> {
    to.serialize_str(text)
}

/// What an entry of the room is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    /// A post.
    Message,
    /// A login came online.
    Join,
    /// A login's last connection has been gone for the presence grace.
    Leave,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Message => "message",
            Self::Join => "join",
            Self::Leave => "leave",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        [Self::Message, Self::Join, Self::Leave]
            .into_iter()
            .find(|kind| kind.as_str() == text)
    }

    /// What a notice says its users did.
    pub fn notice_verb(self) -> Option<&'static str> {
        match self {
            Self::Message => None,
            Self::Join => Some("joined the room"),
            Self::Leave => Some("left the room"),
        }
    }
}

/// Who a `join` or `leave` notice is about: one login, or a crowd folded into one notice
/// (see `presence`). On the wire, `names` and `count` after `kind`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Crowd {
    /// The first of them, up to [`Crowd::MAX_NAMES`], in the order they arrived.
    names: Vec<UserName>,
    /// All of them.
    count: u32,
}

impl Crowd {
    pub const MAX_NAMES: usize = 20;

    pub fn one(name: UserName) -> Self {
        Self {
            names: vec![name],
            count: 1,
        }
    }

    /// `None` unless there is a first name, at most [`Crowd::MAX_NAMES`], and `count`
    /// counts them all.
    pub fn new(names: Vec<UserName>, count: u32) -> Option<Self> {
        let fits = (1..=Self::MAX_NAMES).contains(&names.len());
        (fits && count as usize >= names.len()).then_some(Self { names, count })
    }

    pub fn names(&self) -> &[UserName] {
        &self.names
    }

    pub fn count(&self) -> u32 {
        self.count
    }

    /// The notice's `from`: the first to arrive.
    pub fn first(&self) -> &UserName {
        &self.names[0]
    }

    /// How the notice reads: each name shown with what follows it, then the rest.
    /// "ann" + " " + "joined the room"; "ann" + " and ", "bob" + " ", "joined the room";
    /// "ann" + ", ", "bob" + " and ", "212 others joined the room". Up to three names are
    /// all shown; past that, the first two and a number.
    pub fn sentence(&self, kind: Kind) -> (Vec<(&str, &'static str)>, String) {
        let verb = kind.notice_verb().unwrap_or_default();
        let count = self.count as usize;
        let shown = if count <= 3 && self.names.len() == count {
            count
        } else {
            2.min(self.names.len())
        };
        let others = count - shown;
        let mut parts = Vec::with_capacity(shown);
        for (i, name) in self.names[..shown].iter().enumerate() {
            let then = match (shown - i, others) {
                (1, 0) => " ",
                (1, _) => " and ",
                (2, 0) => " and ",
                _ => ", ",
            };
            parts.push((name.as_str(), then));
        }
        let rest = match others {
            0 => verb.to_owned(),
            1 => format!("1 other {verb}"),
            n => format!("{n} others {verb}"),
        };
        (parts, rest)
    }

    /// The notice's `body`: the verb alone for one login ("joined the room", read after
    /// its `from`), the whole sentence for a crowd ("ann, bob and 212 others joined the
    /// room").
    pub fn body(&self, kind: Kind) -> MessageBody {
        let (parts, rest) = self.sentence(kind);
        if self.count == 1 {
            return MessageBody(rest);
        }
        let mut text: String = parts
            .iter()
            .map(|(name, then)| [*name, *then].concat())
            .collect();
        text.push_str(&rest);
        MessageBody(text)
    }
}

/// A message as every client receives it; field order is the wire order.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Message {
    pub id: MessageId,
    pub from: UserName,
    pub body: MessageBody,
    /// Rendered from `templates/message.html`; shared, so the page is written out from it
    /// without a copy.
    #[serde(serialize_with = "as_str")]
    pub html: ByteString,
    pub time: Timestamp,
    pub kind: Kind,
    /// A notice's `names` and `count`; `None` for a post.
    #[serde(flatten, skip_serializing_if = "Option::is_none")]
    pub crowd: Option<Crowd>,
}

#[cfg(test)]
impl Message {
    /// A message with a chosen id, for unit tests of code that treats ids as opaque.
    pub(crate) fn for_test(id: &MessageId, body: &str) -> Self {
        Self {
            id: id.clone(),
            from: UserName("Ann".into()),
            body: MessageBody(body.to_owned()),
            html: format!("<div>{body}</div>").into(),
            time: Timestamp::of(id),
            kind: Kind::Message,
            crowd: None,
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

// Form and query fields become these through their own parsers.
macro_rules! parsed_from_string {
    ($($name:ty),*) => {$(
        impl TryFrom<String> for $name {
            type Error = InputError;
            fn try_from(raw: String) -> Result<Self, InputError> {
                Self::parse(&raw)
            }
        }
    )*};
}
parsed_from_string!(UserName, LocalPath);

impl Serialize for MessageBody {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_notice_reads_with_up_to_three_names_then_a_number() {
        let crowd = |names: &[&str], count| {
            let names = names.iter().map(|n| UserName::parse(n).unwrap()).collect();
            Crowd::new(names, count).unwrap()
        };
        let body = |c: Crowd, kind| c.body(kind).as_str().to_owned();
        assert_eq!(body(crowd(&["ann"], 1), Kind::Join), "joined the room");
        assert_eq!(
            body(crowd(&["ann", "bob"], 2), Kind::Leave),
            "ann and bob left the room"
        );
        assert_eq!(
            body(crowd(&["ann", "bob", "cy"], 3), Kind::Join),
            "ann, bob and cy joined the room"
        );
        let twenty: Vec<String> = (0..20).map(|i| format!("u{i}")).collect();
        let twenty: Vec<&str> = twenty.iter().map(String::as_str).collect();
        assert_eq!(
            body(crowd(&twenty, 214), Kind::Join),
            "u0, u1 and 212 others joined the room"
        );
        assert_eq!(
            body(crowd(&twenty[..2], 3), Kind::Join),
            "u0, u1 and 1 other joined the room"
        );
        let pair = crowd(&["ann", "bob"], 2);
        let (parts, rest) = pair.sentence(Kind::Join);
        assert_eq!(
            (parts, rest.as_str()),
            (vec![("ann", " and "), ("bob", " ")], "joined the room")
        );
        // Never without a first name, more than 20 names, or a count short of them.
        assert!(Crowd::new(Vec::new(), 3).is_none());
        assert!(Crowd::new(vec![UserName::parse("a").unwrap(); 21], 30).is_none());
        assert!(Crowd::new(vec![UserName::parse("a").unwrap(); 3], 2).is_none());
    }

    #[test]
    fn names_follow_the_allowed_alphabet() {
        for good in ["a", "Alice Smith", "user-123456", "x_y", &"n".repeat(32)] {
            assert!(UserName::parse(good).is_ok(), "{good:?}");
        }
        for bad in [
            "",
            "Zoë",
            "a<b",
            "a/b",
            "tab\there",
            &"n".repeat(33),
            " ",
            "   ",
        ] {
            assert_eq!(UserName::parse(bad), Err(InputError::BadName), "{bad:?}");
        }
    }

    #[test]
    fn names_are_trimmed_and_their_runs_of_spaces_folded() {
        for (raw, folded) in [
            (" Ann", "Ann"),
            ("Ann  ", "Ann"),
            ("  Ann   Lee  ", "Ann Lee"),
            (&format!("  {}  ", "n".repeat(32)), &"n".repeat(32)),
        ] {
            assert_eq!(UserName::parse(raw).unwrap().as_str(), folded, "{raw:?}");
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
    fn ids_are_epoch_and_position_and_order_by_position() {
        let epoch = Epoch::parse("abc123").unwrap();
        let first = MessageId::new(&epoch, Position::ORIGIN.next(1_700_000_000_000));
        assert_eq!(first.as_str(), "abc123-1700000000000-0");
        let second = first.position().next(1_700_000_000_000);
        assert_eq!(
            second,
            Position {
                ms: 1_700_000_000_000,
                seq: 1
            }
        );
        assert!(second > first.position());
        assert_eq!(MessageId::parse("abc123-1700000000000-0"), Some(first));
        for bad in [
            "",
            "abc",
            "abc-1",
            "ABC-1-2",
            "abc-1-x",
            "abc-+1-2",
            "g-1-2",
            "abc-1-2-3",
        ] {
            assert_eq!(MessageId::parse(bad), None, "{bad:?}");
        }
        let random = Epoch::random();
        assert_eq!(Epoch::parse(random.as_str()), Some(random));
    }

    #[test]
    fn times_are_rfc3339_utc_with_milliseconds() {
        for (ms, text, clock) in [
            (0, "1970-01-01T00:00:00.000Z", "00:00"),
            (1_700_000_000_123, "2023-11-14T22:13:20.123Z", "22:13"),
            (951_782_400_000, "2000-02-29T00:00:00.000Z", "00:00"),
            (1_709_251_199_999, "2024-02-29T23:59:59.999Z", "23:59"),
            (4_102_444_800_000, "2100-01-01T00:00:00.000Z", "00:00"),
            (1_796_069_247_161, "2026-11-30T20:07:27.161Z", "20:07"),
        ] {
            let time = Timestamp(ms);
            assert_eq!(
                (time.rfc3339().as_str(), time.clock().as_str()),
                (text, clock),
                "{ms}"
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
    fn bidi_controls_are_dropped_and_invisible_bodies_are_empty() {
        let body =
            MessageBody::parse("see http://a.com/\u{202E}gnp.exe \u{2066}x\u{2069}", 100).unwrap();
        assert_eq!(body.as_str(), "see http://a.com/gnp.exe x");
        for raw in [
            "\u{200B}",
            "\u{FEFF}",
            " \u{200B}\u{200C}\u{200D} \u{2060}\u{FEFF} ",
            "\u{202E}\u{202A}",
        ] {
            assert_eq!(
                MessageBody::parse(raw, 10),
                Err(InputError::EmptyBody),
                "{raw:?}"
            );
        }
        // A joiner inside visible text stays: it builds one emoji out of two.
        let family = "\u{1F468}\u{200D}\u{1F469}";
        assert_eq!(MessageBody::parse(family, 10).unwrap().as_str(), family);
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
