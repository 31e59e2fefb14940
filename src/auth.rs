//! Who is asking: the login stored in the `user` cookie and the `CurrentUser` extractor
//! over it. The cookie is the `cookie` crate's private cookie (AES-GCM: encrypted and
//! authenticated, the cookie's name bound in) with a key from the configuration, holding
//! the [`Login`] as JSON; [`LoginCookies`] writes it at login and reads it on every request,
//! with a per-worker cache, because a client sends the same cookie on every poll and
//! decrypting it each time was a measurable share of the long poll's cost. The cookie's
//! Max-Age only asks the browser to forget it; the issue time inside lets the server refuse
//! an old cookie on its own.

use std::cell::RefCell;
use std::collections::HashMap;
use std::future::{ready, Ready};
use std::rc::Rc;
use std::sync::{Arc, RwLock};
use std::time::{SystemTime, UNIX_EPOCH};

use actix_web::{dev::Payload, web, FromRequest, HttpRequest};
use cookie::time::Duration as CookieDuration;
use cookie::{Cookie, CookieJar, Key, SameSite};
use rand::RngCore;
use serde::{Deserialize, Serialize};

use crate::domain::UserName;
use crate::error::AppError;

pub const USER_COOKIE: &str = "user";

/// What the `user` cookie holds.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Login {
    /// The display name.
    pub name: UserName,
    pub id: LoginId,
    /// Unix seconds when the login was made.
    pub issued_at: u64,
}

/// Random per login (128 bits, written as 32 lowercase hex digits): XSRF tokens, rate
/// limits and socket caps are bound to it. It never leaves the server except inside the
/// encrypted cookie. Held as its 16 bytes: every held poll and socket keeps one in the maps
/// that count them, and a copy costs nothing (as text it was a 48-byte allocation per
/// login and a reference count touched on every copy).
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct LoginId([u8; 16]);

/// A [`LoginId`] as text, on the stack.
pub struct LoginText([u8; 32]);

impl std::ops::Deref for LoginText {
    type Target = str;
    fn deref(&self) -> &str {
        // Hex digits only (see `LoginId::as_str`).
        std::str::from_utf8(&self.0).unwrap_or_default()
    }
}

impl std::fmt::Display for LoginText {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self)
    }
}

impl std::fmt::Debug for LoginId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "LoginId({})", self.as_str())
    }
}

impl Serialize for LoginId {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.as_str())
    }
}

impl<'de> Deserialize<'de> for LoginId {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let raw = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
        Self::parse(&raw)
            .ok_or_else(|| serde::de::Error::custom("a login id is 32 lowercase hex digits"))
    }
}

impl LoginId {
    fn random() -> Self {
        let mut id = [0u8; 16];
        rand::rng().fill_bytes(&mut id);
        Self(id)
    }

    /// The id as the store, the cookie and the XSRF tokens write it: 32 lowercase hex
    /// digits.
    pub fn as_str(&self) -> LoginText {
        let mut text = [0u8; 32];
        // Cannot fail: the output is exactly twice the input.
        let _ = hex::encode_to_slice(self.0, &mut text);
        LoginText(text)
    }

    /// An id as the store keeps it: 32 lowercase hex digits.
    pub fn parse(raw: &str) -> Option<Self> {
        let valid = raw.len() == 32 && raw.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
        let mut id = [0u8; 16];
        (valid && hex::decode_to_slice(raw, &mut id).is_ok()).then_some(Self(id))
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
        now >= self.expires_at(max_age_days) || self.issued_at > now + 300
    }

    /// Unix seconds from which the server refuses this login's cookie by its age.
    pub fn expires_at(&self, max_age_days: u32) -> u64 {
        self.issued_at + u64::from(max_age_days) * 86_400
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

/// Logins a worker's cache may hold before it starts over (a few MiB).
const LOGIN_CACHE_ENTRIES: usize = 20_000;

/// Valid logins by their exact cookie value (a hit is what decryption would give), or
/// rather by its SHA-256, cut to 128 bits: the value itself is a few hundred bytes that
/// every connected login would keep here, and finding another value with the same digest
/// is as hard as breaking SHA-256's second preimages. Values that do not decode are never
/// remembered: garbage cannot fill it.
#[derive(Default)]
struct LoginCache {
    logins: HashMap<[u8; 16], Rc<Login>>,
}

fn cookie_digest(value: &str) -> [u8; 16] {
    use sha2::{Digest, Sha256};
    let full = Sha256::digest(value.as_bytes());
    let mut digest = [0u8; 16];
    digest.copy_from_slice(&full[..16]);
    digest
}

thread_local! {
    static LOGIN_CACHE: RefCell<LoginCache> = RefCell::default();
}

/// Logins ended by logout. The login lives in the cookie, so a copy of the cookie taken
/// before logout would otherwise still work: each ended login is kept here until its cookie
/// would have expired anyway. With Redis the list is shared by every instance and outlives
/// restarts (the store fills it); in memory it is this process's.
#[derive(Default)]
pub struct Revocations {
    /// Login -> Unix seconds until which it is refused.
    ended: RwLock<HashMap<LoginId, u64>>,
}

impl Revocations {
    pub fn is_revoked(&self, id: &LoginId, now: u64) -> bool {
        let ended = self.ended.read().unwrap_or_else(|e| e.into_inner());
        ended.get(id).is_some_and(|&until| until > now)
    }

    /// Ends `logins` (each with the time its cookie expires); returns the ones that were
    /// not ended before.
    pub fn apply(&self, logins: impl IntoIterator<Item = (LoginId, u64)>) -> Vec<LoginId> {
        let now = unix_now();
        let mut ended = self.ended.write().unwrap_or_else(|e| e.into_inner());
        let mut new = Vec::new();
        for (id, until) in logins {
            if until <= now {
                continue;
            }
            if ended.insert(id, until).is_none() {
                new.push(id);
            }
        }
        // Expired entries are dropped whenever the list has doubled since the last time.
        if ended.len().is_power_of_two() {
            ended.retain(|_, until| *until > now);
        }
        new
    }
}

/// Writes and reads the `user` cookie with the configured key.
pub struct LoginCookies {
    key: Key,
    max_age_days: u32,
    secure: bool,
}

impl LoginCookies {
    /// `secret` is the configured cookie secret (at least 64 bytes); the cookie key is
    /// derived from it for this purpose only.
    pub fn new(secret: &[u8], max_age_days: u32, secure: bool) -> Self {
        Self {
            key: Key::derive_from(secret),
            max_age_days,
            secure,
        }
    }

    /// The `user` cookie holding `login`: HttpOnly, SameSite=Lax, for the whole site, for
    /// the login's lifetime. Replaces whatever `user` cookie the browser had.
    pub fn cookie(&self, login: &Login) -> Cookie<'static> {
        // A struct of strings and a number always serialises.
        let value = serde_json::to_string(login).expect("a login serialises to JSON");
        let plain = Cookie::build(USER_COOKIE, value)
            .http_only(true)
            .same_site(SameSite::Lax)
            .path("/")
            .secure(self.secure)
            .max_age(CookieDuration::days(self.max_age_days.into()))
            .finish();
        let mut jar = CookieJar::new();
        jar.private_mut(&self.key).add(plain);
        jar.get(USER_COOKIE)
            .cloned()
            .expect("the cookie just added")
    }

    /// The cookie that makes a browser forget its `user` cookie.
    pub fn removal(&self) -> Cookie<'static> {
        let mut gone = Cookie::build(USER_COOKIE, "").path("/").finish();
        gone.make_removal();
        gone
    }

    /// The login in a `user` cookie value; `None` if it does not decrypt (tampered, or
    /// made with another key) or holds no login.
    fn decode(&self, value: &str) -> Option<Login> {
        let sealed = Cookie::new(USER_COOKIE, value.to_owned());
        let opened = CookieJar::new().private(&self.key).decrypt(sealed)?;
        serde_json::from_str(opened.value()).ok()
    }
}

/// Reads logins from `user` cookies and refuses expired and logged-out ones. The
/// `CurrentUser` extractor finds it as app data of its own.
pub struct LoginReader {
    cookies: LoginCookies,
    revocations: Arc<Revocations>,
}

impl LoginReader {
    pub fn new(cookies: LoginCookies, revocations: Arc<Revocations>) -> Self {
        Self {
            cookies,
            revocations,
        }
    }

    /// Writes the `user` cookie (login and logout).
    pub fn cookies(&self) -> &LoginCookies {
        &self.cookies
    }

    /// The unexpired, not logged-out login of a request, if its `user` cookie holds one.
    fn current(&self, req: &HttpRequest) -> Option<Rc<Login>> {
        let login = self.read(&crate::form::cookie_value(req, USER_COOKIE)?)?;
        let now = unix_now();
        let valid = !login.is_expired(self.cookies.max_age_days, now)
            && !self.revocations.is_revoked(&login.id, now);
        valid.then_some(login)
    }

    /// The login in a `user` cookie value, if it decrypts and holds one.
    pub fn read(&self, cookie_value: &str) -> Option<Rc<Login>> {
        if cookie_value.len() > MAX_COOKIE_BYTES {
            return None;
        }
        let digest = cookie_digest(cookie_value);
        if let Some(hit) = LOGIN_CACHE.with_borrow(|cache| cache.logins.get(&digest).cloned()) {
            return Some(hit);
        }
        let login = Rc::new(self.cookies.decode(cookie_value)?);
        LOGIN_CACHE.with_borrow_mut(|cache| {
            if cache.logins.len() >= LOGIN_CACHE_ENTRIES {
                *cache = LoginCache::default();
            }
            cache.logins.insert(digest, login.clone());
        });
        Some(login)
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
    fn a_login_id_is_written_as_32_lowercase_hex_digits_and_read_only_so() {
        let id = LoginId::random();
        let text = id.as_str().to_string();
        assert_eq!(text.len(), 32);
        assert!(text
            .bytes()
            .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()));
        let json = serde_json::to_string(&id).unwrap();
        assert_eq!(json, format!("\"{text}\""));
        assert_eq!(serde_json::from_str::<LoginId>(&json).unwrap(), id);
        assert_eq!(LoginId::parse(&text), Some(id));
        for bad in [
            "00ff",
            "",
            &"AB".repeat(16),
            &format!("{text}0"),
            &text.replace(&text[..1], "g"),
        ] {
            assert_eq!(LoginId::parse(bad), None, "{bad:?}");
            assert!(serde_json::from_value::<LoginId>(serde_json::json!(bad)).is_err());
        }
    }

    #[test]
    fn only_valid_logins_are_remembered_and_oversized_values_are_not_read() {
        let reader = LoginReader::new(LoginCookies::new(&[1; 64], 30, false), Arc::default());
        for i in 0..100 {
            assert!(reader
                .read(&format!("garbage-{i}-{}", "x".repeat(1000)))
                .is_none());
        }
        assert!(reader.read(&"y".repeat(MAX_COOKIE_BYTES + 1)).is_none());
        LOGIN_CACHE.with_borrow(|cache| assert_eq!(cache.logins.len(), 0));
    }

    #[test]
    fn a_revoked_login_stays_refused_until_its_cookie_expires() {
        let revocations = Revocations::default();
        let now = unix_now();
        let (a, b) = (LoginId::random(), LoginId::random());
        let new = revocations.apply([(a, now + 100), (b, now - 1)]);
        assert_eq!(new, std::slice::from_ref(&a), "already expired: not kept");
        assert!(revocations.is_revoked(&a, now));
        assert!(!revocations.is_revoked(&a, now + 100));
        assert!(!revocations.is_revoked(&b, now));
        // Applying it again (a reload from the store) does not count it as new.
        assert!(revocations.apply([(a, now + 100)]).is_empty());
    }

    #[test]
    fn the_cookie_round_trips_and_refuses_tampering_and_other_keys() {
        let cookies = LoginCookies::new(&[3; 64], 30, true);
        let login = Login::new(UserName::parse("Ann").unwrap());
        let cookie = cookie_of(&cookies, &login);
        assert!(cookie.http_only() == Some(true) && cookie.secure() == Some(true));
        assert_eq!(cookie.same_site(), Some(SameSite::Lax));
        assert_eq!(cookie.max_age(), Some(CookieDuration::days(30)));
        assert!(
            !cookie.value().contains("Ann"),
            "encrypted, not just signed"
        );
        let read = cookies.decode(cookie.value()).unwrap();
        assert_eq!((read.name, read.id), (login.name.clone(), login.id));
        let mut tampered = cookie.value().to_owned().into_bytes();
        tampered[10] ^= 1;
        assert!(cookies
            .decode(&String::from_utf8_lossy(&tampered))
            .is_none());
        let other = LoginCookies::new(&[4; 64], 30, true);
        assert!(other.decode(cookie.value()).is_none());
    }

    fn cookie_of(cookies: &LoginCookies, login: &Login) -> Cookie<'static> {
        cookies.cookie(login)
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
