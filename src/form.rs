//! A strict `application/x-www-form-urlencoded` reader for form bodies and query strings.
//! Unlike the lenient decoders, broken percent-encoding and invalid UTF-8 are errors (the
//! client gets a 400) instead of being passed on as replacement characters.

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum FormError {
    #[error("malformed percent-encoding in the form")]
    BadPercentEncoding,
    #[error("the form is not valid UTF-8")]
    InvalidUtf8,
}

/// Decoded fields in request order. When a name repeats, the last value wins (as Tornado).
#[derive(Debug, Default)]
pub struct FormFields(Vec<(String, String)>);

impl FormFields {
    pub fn parse(input: &[u8]) -> Result<Self, FormError> {
        let mut fields = Vec::new();
        for pair in input.split(|&b| b == b'&').filter(|p| !p.is_empty()) {
            let (name, value) = match pair.iter().position(|&b| b == b'=') {
                Some(eq) => (&pair[..eq], &pair[eq + 1..]),
                None => (pair, &b""[..]),
            };
            fields.push((decode(name)?, decode(value)?));
        }
        Ok(Self(fields))
    }

    pub fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .rev()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// Like `get`, but an empty value counts as absent.
    pub fn get_non_empty(&self, name: &str) -> Option<&str> {
        self.get(name).filter(|v| !v.is_empty())
    }
}

fn decode(raw: &[u8]) -> Result<String, FormError> {
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

    #[test]
    fn decodes_plus_and_percent() {
        let f = FormFields::parse(b"body=a+b%20c%C3%A9&_xsrf=t&empty=&flag").unwrap();
        assert_eq!(f.get("body"), Some("a b cé"));
        assert_eq!(f.get("_xsrf"), Some("t"));
        assert_eq!(f.get("empty"), Some(""));
        assert_eq!(f.get_non_empty("empty"), None);
        assert_eq!(f.get("flag"), Some(""));
        assert_eq!(f.get("missing"), None);
    }

    #[test]
    fn last_value_wins() {
        let f = FormFields::parse(b"a=1&a=2").unwrap();
        assert_eq!(f.get("a"), Some("2"));
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
