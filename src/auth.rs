//! Who is asking: the login stored in the `user` cookie and the `CurrentUser` extractor
//! over it. actix-session writes the cookie (at login and logout, the only routes it wraps):
//! its cookie store, AES-GCM encrypted and authenticated with a key from the configuration.
//! Every other request only needs to read it, which `LoginReader` does without the session
//! middleware's per-request bookkeeping, and with a per-worker cache, because a client sends
//! the same cookie on every poll and decrypting it each time was a measurable share of the
//! long poll's cost. The cookie's Max-Age only asks the browser to forget it; the issue time
//! inside lets the server refuse an old cookie on its own.

use std::cell::RefCell;
use std::collections::HashMap;
use std::future::{ready, Ready};
use std::rc::Rc;
use std::time::{SystemTime, UNIX_EPOCH};

use actix_session::Session;
use actix_web::cookie::{Cookie, CookieJar, Key};
use actix_web::{dev::Payload, web, FromRequest, HttpRequest};
use rand::RngCore;
use serde::{Deserialize, Serialize};

use crate::domain::UserName;
use crate::error::AppError;

pub const USER_COOKIE: &str = "user";
const SESSION_KEY: &str = "login";

/// What the `user` cookie holds.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Login {
    /// The display name.
    pub name: UserName,
    pub id: LoginId,
    /// Unix seconds when the login was made.
    pub issued_at: u64,
}

/// Random per login (128 bits, hex): XSRF tokens, rate limits and socket caps are bound to
/// it. It never leaves the server except inside the encrypted cookie.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct LoginId(String);

impl LoginId {
    fn random() -> Self {
        let mut id = [0u8; 16];
        rand::rng().fill_bytes(&mut id);
        Self(hex::encode(id))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl Login {
    pub fn new(name: UserName) -> Self {
        Self {
            name,
            id: LoginId::random(),
            issued_at: unix_now(),
        }
    }

    pub fn is_expired(&self, max_age_days: u32, now: u64) -> bool {
        let max_age_secs = u64::from(max_age_days) * 86_400;
        now.saturating_sub(self.issued_at) >= max_age_secs || self.issued_at > now + 300
    }

    /// Stores the login in a fresh session (a new cookie, so a planted one is replaced).
    pub fn save(&self, session: &Session) -> Result<(), AppError> {
        session.renew();
        session
            .insert(SESSION_KEY, self)
            .map_err(AppError::internal)
    }
}

pub fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// A `user` cookie this server makes is a few hundred bytes; a longer value is not one
/// and is refused without being decrypted or remembered.
const MAX_COOKIE_BYTES: usize = 4096;

/// Bytes of cookie values a worker's cache may hold before it starts over: bounded by
/// bytes, not entries, so large values cannot make it large.
const LOGIN_CACHE_BYTES: usize = 4 << 20;

/// Valid logins by their exact cookie value (a hit is what decryption would give).
/// Values that do not decode are never remembered: garbage cannot fill it.
#[derive(Default)]
struct LoginCache {
    logins: HashMap<Box<str>, Rc<Login>>,
    bytes: usize,
}

thread_local! {
    static LOGIN_CACHE: RefCell<LoginCache> = RefCell::default();
}

/// Reads logins from `user` cookies made by actix-session's cookie store with `key`. The
/// `CurrentUser` extractor finds it as app data of its own.
pub struct LoginReader {
    key: Key,
    max_age_days: u32,
}

impl LoginReader {
    pub fn new(key: Key, max_age_days: u32) -> Self {
        Self { key, max_age_days }
    }

    /// The unexpired login of a request, if its `user` cookie holds one.
    fn current(&self, req: &HttpRequest) -> Option<Rc<Login>> {
        let login = self.read(req.cookie(USER_COOKIE)?.value())?;
        (!login.is_expired(self.max_age_days, unix_now())).then_some(login)
    }

    /// The login in a `user` cookie value, if it decrypts and holds one.
    pub fn read(&self, cookie_value: &str) -> Option<Rc<Login>> {
        if cookie_value.len() > MAX_COOKIE_BYTES {
            return None;
        }
        if let Some(hit) = LOGIN_CACHE.with_borrow(|cache| cache.logins.get(cookie_value).cloned())
        {
            return Some(hit);
        }
        let login = Rc::new(self.decode(cookie_value)?);
        LOGIN_CACHE.with_borrow_mut(|cache| {
            if cache.bytes + cookie_value.len() > LOGIN_CACHE_BYTES {
                *cache = LoginCache::default();
            }
            cache.bytes += cookie_value.len();
            cache.logins.insert(cookie_value.into(), login.clone());
        });
        Some(login)
    }

    /// actix-session's cookie store keeps the session as a private cookie whose value is a
    /// JSON map of key -> JSON-encoded value. A cookie that fails to decrypt (tampered, or
    /// made with another key) is simply "not logged in".
    fn decode(&self, cookie_value: &str) -> Option<Login> {
        let mut jar = CookieJar::new();
        jar.add_original(Cookie::new(USER_COOKIE, cookie_value.to_owned()));
        let cookie = jar.private(&self.key).get(USER_COOKIE)?;
        let state: HashMap<String, String> = serde_json::from_str(cookie.value()).ok()?;
        serde_json::from_str(state.get(SESSION_KEY)?).ok()
    }
}

/// The logged-in user of a request. As an extractor it fails with 403 (as Tornado does for
/// POSTs); a page that should redirect takes `Option<CurrentUser>` instead.
#[derive(Debug, Clone)]
pub struct CurrentUser(pub Rc<Login>);

impl FromRequest for CurrentUser {
    type Error = AppError;
    type Future = Ready<Result<Self, AppError>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let login = req
            .app_data::<web::Data<LoginReader>>()
            .and_then(|reader| reader.current(req));
        ready(login.map(Self).ok_or(AppError::Forbidden("login required")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_valid_logins_are_remembered_and_oversized_values_are_not_read() {
        let reader = LoginReader::new(Key::generate(), 30);
        for i in 0..100 {
            assert!(reader
                .read(&format!("garbage-{i}-{}", "x".repeat(1000)))
                .is_none());
        }
        assert!(reader.read(&"y".repeat(MAX_COOKIE_BYTES + 1)).is_none());
        LOGIN_CACHE.with_borrow(|cache| {
            assert_eq!((cache.logins.len(), cache.bytes), (0, 0));
        });
    }

    #[test]
    fn logins_expire_after_max_age() {
        let login = Login {
            name: UserName::parse("a").unwrap(),
            id: LoginId::random(),
            issued_at: 1_000_000,
        };
        assert!(!login.is_expired(30, 1_000_000 + 29 * 86_400));
        assert!(login.is_expired(30, 1_000_000 + 30 * 86_400));
        // A login from the far future was not issued by this clock.
        assert!(login.is_expired(30, 1_000_000 - 3_600));
    }
}
