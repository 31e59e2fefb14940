//! XSRF tokens: issued and checked here and nowhere else.
//!
//! A token is `hex(nonce)-hex(mac)` where `mac = HMAC-SHA256(key, login_id || nonce)`,
//! truncated to 128 bits. It is bound to the server secret and to one login, so a pair an
//! attacker made up (a cookie planted from a sibling subdomain plus the same form value), a
//! tampered token, or another login's token never passes. Like Tornado, a request must
//! also carry the `_xsrf` cookie, equal to the token it submits (double submit).

use actix_web::cookie::{time::Duration as CookieDuration, Cookie, SameSite};
use actix_web::HttpRequest;
use hmac::{Mac, SimpleHmac};
use rand::RngCore;
use sha2::Sha256;
use subtle::ConstantTimeEq;

use crate::error::AppError;

pub const COOKIE_NAME: &str = "_xsrf";
const HEADER_NAMES: [&str; 2] = ["x-xsrftoken", "x-csrftoken"];
const NONCE_BYTES: usize = 16;
const MAC_BYTES: usize = 16;

type HmacSha256 = SimpleHmac<Sha256>;

/// The key tokens are signed with, derived from the cookie secret for this purpose only,
/// kept as the HMAC already keyed with it (each check clones it instead of hashing the key
/// again: every poll is checked).
#[derive(Clone)]
pub struct XsrfKey(HmacSha256);

impl XsrfKey {
    pub fn derive(secret: &[u8]) -> Self {
        let mut mac = HmacSha256::new_from_slice(secret).expect("HMAC takes keys of any length");
        mac.update(b"chatdemo xsrf token key v1");
        let key: [u8; 32] = mac.finalize().into_bytes().into();
        Self(HmacSha256::new_from_slice(&key).expect("HMAC takes keys of any length"))
    }

    /// A fresh token for the login `login_id`.
    pub fn issue(&self, login_id: &str) -> String {
        let mut nonce = [0u8; NONCE_BYTES];
        rand::rng().fill_bytes(&mut nonce);
        format!(
            "{}-{}",
            hex::encode(nonce),
            hex::encode(self.mac(login_id, &nonce))
        )
    }

    /// Whether `token` was issued by this server for `login_id`.
    pub fn is_valid(&self, login_id: &str, token: &str) -> bool {
        Token::parse(token).is_some_and(|token| self.issued(login_id, &token))
    }

    fn issued(&self, login_id: &str, token: &Token) -> bool {
        let (nonce, mac) = token.0.split_at(NONCE_BYTES);
        bool::from(self.mac(login_id, nonce).ct_eq(mac))
    }

    /// The check every state-changing request passes: a submitted token, equal to the
    /// `_xsrf` cookie, issued for this login.
    pub fn check(
        &self,
        login_id: &str,
        cookie: Option<&str>,
        submitted: Option<&str>,
    ) -> Result<(), AppError> {
        let equals = cookie.map(|cookie| {
            move |submitted: &str| bool::from(cookie.as_bytes().ct_eq(submitted.as_bytes()))
        });
        self.verify(login_id, equals, submitted)
    }

    /// [`XsrfKey::check`] against a cookie kept as a [`Token`] (a WebSocket keeps its
    /// upgrade's cookie so for its whole life). A cookie that was not a token at all is
    /// kept as `None`: no submitted token can equal it.
    pub fn check_token(
        &self,
        login_id: &str,
        cookie: Option<&Token>,
        submitted: Option<&str>,
    ) -> Result<(), AppError> {
        let equals = cookie.map(|cookie| {
            move |submitted: &str| {
                Token::parse(submitted).is_some_and(|t| bool::from(cookie.0.ct_eq(&t.0)))
            }
        });
        self.verify(login_id, equals, submitted)
    }

    /// Both checks: `cookie_equals` says whether a submitted token equals the cookie
    /// (`None`: there is no cookie).
    fn verify(
        &self,
        login_id: &str,
        cookie_equals: Option<impl FnOnce(&str) -> bool>,
        submitted: Option<&str>,
    ) -> Result<(), AppError> {
        let submitted =
            submitted.ok_or(AppError::Forbidden("'_xsrf' argument missing from POST"))?;
        let equals = cookie_equals.ok_or(AppError::Forbidden("'_xsrf' cookie missing"))?;
        if !equals(submitted) {
            return Err(AppError::Forbidden(
                "XSRF cookie does not match POST argument",
            ));
        }
        if !self.is_valid(login_id, submitted) {
            return Err(AppError::Forbidden("invalid XSRF token"));
        }
        Ok(())
    }

    /// `check` over an HTTP request: the token comes from the form field `_xsrf` (`field`),
    /// else the `X-Xsrftoken` or `X-Csrftoken` header.
    pub fn check_request(
        &self,
        req: &HttpRequest,
        field: Option<&str>,
        login_id: &str,
    ) -> Result<(), AppError> {
        let submitted = field.filter(|v| !v.is_empty()).or_else(|| {
            HEADER_NAMES.iter().find_map(|name| {
                req.headers()
                    .get(*name)
                    .and_then(|v| v.to_str().ok())
                    .filter(|v| !v.is_empty())
            })
        });
        let cookie = crate::form::cookie_value(req, COOKIE_NAME);
        self.check(login_id, cookie.as_deref(), submitted)
    }

    fn mac(&self, login_id: &str, nonce: &[u8]) -> [u8; MAC_BYTES] {
        let mut mac = self.0.clone();
        mac.update(login_id.as_bytes());
        mac.update(&[0]);
        mac.update(nonce);
        let full = mac.finalize().into_bytes();
        let mut out = [0u8; MAC_BYTES];
        out.copy_from_slice(&full[..MAC_BYTES]);
        out
    }
}

/// A token as its bytes (nonce, then MAC): 32 bytes, where its text is 65 characters on
/// the heap.
pub struct Token([u8; NONCE_BYTES + MAC_BYTES]);

impl Token {
    /// `hex(nonce)-hex(mac)`, of exactly these sizes; anything else is `None`.
    pub fn parse(text: &str) -> Option<Self> {
        let (nonce_hex, mac_hex) = text.split_once('-')?;
        let mut bytes = [0u8; NONCE_BYTES + MAC_BYTES];
        let (nonce, mac) = bytes.split_at_mut(NONCE_BYTES);
        hex::decode_to_slice(nonce_hex, nonce).ok()?;
        hex::decode_to_slice(mac_hex, mac).ok()?;
        Some(Self(bytes))
    }
}

/// The `_xsrf` cookie: readable by the page's script (not HttpOnly), lives as long as a login.
pub fn cookie(token: String, secure: bool, max_age_days: u32) -> Cookie<'static> {
    Cookie::build(COOKIE_NAME, token)
        .path("/")
        .same_site(SameSite::Lax)
        .secure(secure)
        .http_only(false)
        .max_age(CookieDuration::days(max_age_days.into()))
        .finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> XsrfKey {
        XsrfKey::derive(&[7u8; 64])
    }

    #[test]
    fn issued_tokens_verify_for_their_login_only() {
        let token = key().issue("login-a");
        assert!(key().is_valid("login-a", &token));
        assert!(!key().is_valid("login-b", &token));
        assert!(!XsrfKey::derive(&[8u8; 64]).is_valid("login-a", &token));
    }

    #[test]
    fn tampered_or_made_up_tokens_fail() {
        let token = key().issue("login-a");
        let mut tampered = token.clone().into_bytes();
        let last = tampered.len() - 1;
        tampered[last] = if tampered[last] == b'0' { b'1' } else { b'0' };
        let tampered = String::from_utf8(tampered).unwrap();
        for bad in [
            &tampered[..],
            "",
            "abc",
            "abc-def",
            &token[..10],
            "2|00|00|0",
        ] {
            assert!(!key().is_valid("login-a", bad), "{bad:?}");
        }
    }

    #[test]
    fn check_needs_a_matching_cookie() {
        let token = key().issue("me");
        assert!(key().check("me", Some(&token), Some(&token)).is_ok());
        assert!(key().check("me", None, Some(&token)).is_err());
        assert!(key().check("me", Some(&token), None).is_err());
        let other = key().issue("me");
        assert!(key().check("me", Some(&other), Some(&token)).is_err());
        // An attacker-chosen pair that matches itself still fails.
        assert!(key().check("me", Some("abc"), Some("abc")).is_err());
    }

    #[test]
    fn a_socket_checks_against_its_cookie_kept_as_bytes_as_strictly() {
        let token = key().issue("me");
        let kept = Token::parse(&token);
        assert!(key().check_token("me", kept.as_ref(), Some(&token)).is_ok());
        assert!(key()
            .check_token("you", kept.as_ref(), Some(&token))
            .is_err());
        assert!(key().check_token("me", None, Some(&token)).is_err());
        assert!(key().check_token("me", kept.as_ref(), None).is_err());
        let other = key().issue("me");
        assert!(key()
            .check_token("me", kept.as_ref(), Some(&other))
            .is_err());
        assert!(key().check_token("me", kept.as_ref(), Some("abc")).is_err());
        // A made-up pair that matches itself still fails, and a cookie that is no token
        // at all is kept as nothing.
        let made_up = format!("{}-{}", "00".repeat(16), "11".repeat(16));
        let kept_made_up = Token::parse(&made_up);
        assert!(kept_made_up.is_some());
        assert!(key()
            .check_token("me", kept_made_up.as_ref(), Some(&made_up))
            .is_err());
        assert!(Token::parse("abc").is_none() && Token::parse(&token[1..]).is_none());
    }
}
