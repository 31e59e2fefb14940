//! A strict `application/x-www-form-urlencoded` reader for form bodies and query strings,
//! and the step that turns the fields into a route's typed struct ([`decode`]). Unlike the
//! lenient decoders, broken percent-encoding and invalid UTF-8 are errors (the client gets
//! a 400) instead of being passed on as replacement characters. Unknown fields are ignored
//! (as Tornado); when a name repeats, the last value wins (as Tornado). Also the value of
//! one cookie, read in place ([`cookie_value`]).

use std::borrow::Cow;
use std::collections::HashSet;
use std::fmt::Display;

use actix_web::http::header;
use actix_web::HttpRequest;
use serde::de::value::MapDeserializer;
use serde::de::{self, DeserializeOwned, IntoDeserializer, Visitor};
use serde::{Deserialize, Deserializer};

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum FormError {
    #[error("malformed percent-encoding in the form")]
    BadPercentEncoding,
    #[error("the form is not valid UTF-8")]
    InvalidUtf8,
    #[error("missing argument {0}")]
    Missing(&'static str),
    /// A field that does not make a valid value; the text says what is wrong.
    #[error("{0}")]
    Invalid(String),
}

impl de::Error for FormError {
    fn custom<T: Display>(message: T) -> Self {
        Self::Invalid(message.to_string())
    }

    fn missing_field(field: &'static str) -> Self {
        Self::Missing(field)
    }
}

/// The form field that carries the XSRF token (as Tornado).
pub const XSRF_FIELD: &str = "_xsrf";

/// Decodes a form body or query string into `T`, strictly: see the module's notes.
/// The value of the cookie `name` in `req`'s `Cookie` headers (the first one, as
/// actix-web's `HttpRequest::cookie` gives it). Read in place: actix-web's parses and
/// percent-decodes every cookie of the request into a list, and every poll asks for two.
/// A value with a `%` in it (never one of ours) is left to actix-web's decoding.
pub fn cookie_value<'a>(req: &'a HttpRequest, name: &str) -> Option<Cow<'a, str>> {
    for header in req.headers().get_all(header::COOKIE) {
        // Bytes, not `to_str`: that checks every character of every cookie, and only the
        // one value wanted needs to be text.
        for pair in header.as_bytes().split(|&b| b == b';') {
            let Some(eq) = pair.iter().position(|&b| b == b'=') else {
                continue;
            };
            if pair[..eq].trim_ascii() != name.as_bytes() {
                continue;
            }
            let value = pair[eq + 1..].trim_ascii();
            if value.contains(&b'%') {
                return req.cookie(name).map(|c| Cow::Owned(c.value().to_owned()));
            }
            // A quoted value is the text inside the quotes (as the cookie crate reads it).
            let value = value
                .strip_prefix(b"\"")
                .and_then(|v| v.strip_suffix(b"\""))
                .unwrap_or(value);
            // Only text; what is in it is for the caller to judge (a login cookie must
            // decrypt, an XSRF token must verify).
            return std::str::from_utf8(value).ok().map(Cow::Borrowed);
        }
    }
    None
}

pub fn decode<T: DeserializeOwned>(input: &[u8]) -> Result<T, FormError> {
    into_struct(FormFields::parse(input)?.last_values())
}

/// A POST form: its XSRF token apart from the rest, so the token is checked before the
/// other fields are judged (a forged request learns nothing about them, as in Tornado).
pub struct Posted<T> {
    /// The `_xsrf` field, when present and not empty.
    pub xsrf: Option<String>,
    pub form: Result<T, FormError>,
}

/// Decodes a POST body; only a body that is not a form at all fails outright.
pub fn decode_posted<T: DeserializeOwned>(input: &[u8]) -> Result<Posted<T>, FormError> {
    let mut fields = FormFields::parse(input)?.last_values();
    let xsrf = fields
        .iter()
        .position(|(name, _)| name == XSRF_FIELD)
        .map(|at| fields.remove(at).1)
        .filter(|token| !token.is_empty());
    Ok(Posted {
        xsrf,
        form: into_struct(fields),
    })
}

fn into_struct<T: DeserializeOwned>(fields: Vec<(String, String)>) -> Result<T, FormError> {
    T::deserialize(MapDeserializer::new(
        fields
            .into_iter()
            .map(|(name, value)| (name, FieldValue(value))),
    ))
}

/// For `#[serde(default, deserialize_with = "form::empty_as_none")]`: an optional field
/// whose empty value counts as absent, as browsers send empty inputs.
pub fn empty_as_none<'de, D, T>(deserializer: D) -> Result<Option<T>, D::Error>
where
    D: Deserializer<'de>,
    T: TryFrom<String>,
    T::Error: Display,
{
    match Option::<String>::deserialize(deserializer)? {
        Some(raw) if !raw.is_empty() => T::try_from(raw).map(Some).map_err(de::Error::custom),
        _ => Ok(None),
    }
}

/// Decoded fields in request order.
#[derive(Debug, Default)]
struct FormFields(Vec<(String, String)>);

impl FormFields {
    fn parse(input: &[u8]) -> Result<Self, FormError> {
        let mut fields = Vec::new();
        for pair in input.split(|&b| b == b'&').filter(|p| !p.is_empty()) {
            let (name, value) = match pair.iter().position(|&b| b == b'=') {
                Some(eq) => (&pair[..eq], &pair[eq + 1..]),
                None => (pair, &b""[..]),
            };
            fields.push((percent_decode(name)?, percent_decode(value)?));
        }
        Ok(Self(fields))
    }

    /// One value per name, the last one sent.
    fn last_values(self) -> Vec<(String, String)> {
        let mut seen = HashSet::with_capacity(self.0.len());
        let mut fields: Vec<_> = self
            .0
            .into_iter()
            .rev()
            .filter(|(name, _)| seen.insert(name.clone()))
            .collect();
        fields.reverse();
        fields
    }
}

/// One field's value: a string, which an `Option` field reads as present.
struct FieldValue(String);

impl IntoDeserializer<'_, FormError> for FieldValue {
    type Deserializer = Self;
    fn into_deserializer(self) -> Self {
        self
    }
}

impl<'de> Deserializer<'de> for FieldValue {
    type Error = FormError;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, FormError> {
        visitor.visit_string(self.0)
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, FormError> {
        visitor.visit_some(self)
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes byte_buf
        unit unit_struct newtype_struct seq tuple tuple_struct map struct enum identifier
        ignored_any
    }
}

fn percent_decode(raw: &[u8]) -> Result<String, FormError> {
    let mut bytes = Vec::with_capacity(raw.len());
    let mut i = 0;
    while i < raw.len() {
        match raw[i] {
            b'+' => bytes.push(b' '),
            b'%' => {
                let hex = raw.get(i + 1..i + 3).ok_or(FormError::BadPercentEncoding)?;
                let high = hex_value(hex[0]).ok_or(FormError::BadPercentEncoding)?;
                let low = hex_value(hex[1]).ok_or(FormError::BadPercentEncoding)?;
                bytes.push(high << 4 | low);
                i += 2;
            }
            b => bytes.push(b),
        }
        i += 1;
    }
    String::from_utf8(bytes).map_err(|_| FormError::InvalidUtf8)
}

fn hex_value(b: u8) -> Option<u8> {
    (b as char).to_digit(16).map(|d| d as u8)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The value read in place is the one actix-web's cookie parsing gives, for every
    /// shape a `Cookie` header comes in.
    #[test]
    fn a_cookie_is_read_as_actix_web_reads_it() {
        use actix_web::test::TestRequest;
        let cases: &[&[&str]] = &[
            &["user=abc; _xsrf=2|x|y"],
            &["a=1;user=abc=def;_xsrf=t"],
            &["  user =  spaced  ; b=2"],
            &["other=1", "user=second-header"],
            &["user=\"quoted\""],
            &["user=per%20cent; _xsrf=%7Cx"],
            &["noequals; user=after"],
            &["users=no; auser=no"],
            &["_xsrf=only"],
            &[],
        ];
        for headers in cases {
            let mut req = TestRequest::default();
            for value in *headers {
                req = req.append_header((header::COOKIE, *value));
            }
            let req = req.to_http_request();
            for name in ["user", "_xsrf"] {
                let ours = cookie_value(&req, name).map(Cow::into_owned);
                let theirs = req.cookie(name).map(|c| c.value().to_owned());
                assert_eq!(ours, theirs, "{name} in {headers:?}");
            }
        }
    }

    #[derive(Debug, Deserialize, PartialEq)]
    struct Sample {
        body: String,
        #[serde(rename = "_xsrf", default, deserialize_with = "empty_as_none")]
        xsrf: Option<String>,
        #[serde(default, deserialize_with = "empty_as_none")]
        empty: Option<String>,
        flag: Option<String>,
        missing: Option<String>,
    }

    #[derive(Debug, Deserialize)]
    struct Numbered {
        #[serde(default, deserialize_with = "empty_as_none")]
        n: Option<Even>,
    }

    #[derive(Debug)]
    struct Even;

    impl TryFrom<String> for Even {
        type Error = &'static str;
        fn try_from(raw: String) -> Result<Self, &'static str> {
            raw.len()
                .is_multiple_of(2)
                .then_some(Even)
                .ok_or("n must have an even length")
        }
    }

    #[test]
    fn decodes_plus_and_percent_into_fields() {
        let f: Sample = decode(b"body=a+b%20c%C3%A9&_xsrf=t&empty=&flag&other=x").unwrap();
        assert_eq!(
            f,
            Sample {
                body: "a b cé".into(),
                xsrf: Some("t".into()),
                empty: None,
                flag: Some(String::new()),
                missing: None,
            }
        );
    }

    #[test]
    fn last_value_wins() {
        let f: Sample = decode(b"body=1&_xsrf=a&body=2").unwrap();
        assert_eq!(f.body, "2");
        assert_eq!(f.xsrf.as_deref(), Some("a"));
    }

    #[test]
    fn a_posted_form_keeps_its_token_apart() {
        let posted: Posted<Sample> = decode_posted(b"_xsrf=tok&body=hi").unwrap();
        assert_eq!(posted.xsrf.as_deref(), Some("tok"));
        let form = posted.form.unwrap();
        assert_eq!((form.body.as_str(), form.xsrf), ("hi", None));
        let posted: Posted<Sample> = decode_posted(b"_xsrf=").unwrap();
        assert_eq!(posted.xsrf, None);
        assert_eq!(posted.form.unwrap_err(), FormError::Missing("body"));
        assert!(decode_posted::<Sample>(b"_xsrf=%zz").is_err());
    }

    #[test]
    fn a_missing_required_field_is_named() {
        let err = decode::<Sample>(b"_xsrf=t").unwrap_err();
        assert_eq!(err, FormError::Missing("body"));
        assert_eq!(err.to_string(), "missing argument body");
    }

    #[test]
    fn an_invalid_value_says_why() {
        assert!(decode::<Numbered>(b"n=ab").unwrap().n.is_some());
        assert!(decode::<Numbered>(b"n=").unwrap().n.is_none());
        let err = decode::<Numbered>(b"n=abc").unwrap_err();
        assert_eq!(err.to_string(), "n must have an even length");
    }

    #[test]
    fn broken_percent_encoding_is_an_error() {
        for bad in [&b"a=%"[..], b"a=%4", b"a=%zz", b"%g0=1"] {
            assert_eq!(
                FormFields::parse(bad).unwrap_err(),
                FormError::BadPercentEncoding
            );
        }
    }

    #[test]
    fn invalid_utf8_is_an_error() {
        assert_eq!(
            FormFields::parse(b"a=%FF").unwrap_err(),
            FormError::InvalidUtf8
        );
        assert_eq!(
            FormFields::parse(b"a=\xc3").unwrap_err(),
            FormError::InvalidUtf8
        );
    }
}
