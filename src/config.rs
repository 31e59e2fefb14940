//! Typed settings, layered by figment: the `config.toml` embedded in the binary (it holds
//! every key, so it is also the list of known keys), then a config file, then
//! `CHATDEMO_<SECTION>__<KEY>` environment variables, then the command line. Each key's
//! type and range are declared once, on its field below; a value of the wrong kind, out of
//! range, or under an unknown key stops the start with an error naming the key.

use std::fmt;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use figment::providers::{Format, Serialized, Toml};
use figment::value::{Dict, Map, Value};
use figment::{Figment, Metadata, Profile, Provider};
use serde::de::{self, Deserializer};
use serde::Deserialize;

/// The shipped `config.toml`: the defaults, and the list of known keys.
const DEFAULTS: &str = include_str!("../config.toml");
const ENV_PREFIX: &str = "CHATDEMO_";

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    pub server: ServerSettings,
    pub security: SecuritySettings,
    pub room: RoomSettings,
    pub websocket: WebSocketSettings,
    pub presence: PresenceConfig,
    pub store: StoreSettings,
    pub log: LogSettings,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerSettings {
    pub address: IpAddr,
    pub port: u16,
    /// 0 means one worker per core.
    #[serde(deserialize_with = "within::<0, 512, _, _>")]
    pub workers: usize,
    /// 0 means derived from the open-file limit (see [`ServerSettings::connection_limit`]).
    pub max_connections: usize,
    /// The most of those one client address may hold; 0 means a tenth of them.
    pub max_connections_per_address: usize,
    /// A theme directory with `templates/` and `static/`; `None` (empty) means the
    /// built-in files.
    #[serde(deserialize_with = "empty_as_none")]
    pub assets_dir: Option<PathBuf>,
    /// Peers whose `X-Forwarded-*` headers are believed (a reverse proxy in front).
    #[serde(deserialize_with = "list")]
    pub trusted_proxies: Vec<IpAddr>,
    /// Client addresses (as `trusted_proxies` resolves them) that may read `/metrics`.
    #[serde(deserialize_with = "list")]
    pub metrics_allow: Vec<IpAddr>,
    /// How long a POST body may take to arrive in full.
    #[serde(deserialize_with = "within::<1, 3600, _, _>")]
    pub body_timeout_secs: u64,
    /// How long an HTTP answer may take to be written; a client that reads slower is cut.
    #[serde(deserialize_with = "within::<1, 3600, _, _>")]
    pub write_timeout_secs: u64,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SecuritySettings {
    pub cookie_secret: Secret,
    #[serde(deserialize_with = "within::<1, 3650, _, _>")]
    pub cookie_max_age_days: u32,
    pub cookie_secure: bool,
    #[serde(deserialize_with = "list")]
    pub allowed_origins: Vec<Origin>,
    /// New logins per client address: a burst, then a steady rate.
    #[serde(deserialize_with = "within::<1, 1_000_000, _, _>")]
    pub login_burst: u32,
    #[serde(deserialize_with = "per_sec")]
    pub login_per_sec: f64,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RoomSettings {
    #[serde(deserialize_with = "within::<1, 100_000, _, _>")]
    pub cache_size: usize,
    #[serde(deserialize_with = "within::<1, 3600, _, _>")]
    pub poll_timeout_secs: u64,
    #[serde(deserialize_with = "within::<1, 100_000, _, _>")]
    pub max_message_chars: usize,
    #[serde(deserialize_with = "within::<1, 1_000_000, _, _>")]
    pub rate_burst: u32,
    #[serde(deserialize_with = "per_sec")]
    pub rate_per_sec: f64,
    /// Posts per client address, across all its logins.
    #[serde(deserialize_with = "within::<1, 1_000_000, _, _>")]
    pub address_burst: u32,
    #[serde(deserialize_with = "per_sec")]
    pub address_per_sec: f64,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebSocketSettings {
    #[serde(deserialize_with = "within::<1024, 16_777_216, _, _>")]
    pub max_frame_bytes: usize,
    /// Bounded above too: the socket's timers add it to the clock.
    #[serde(deserialize_with = "within::<1, 3600, _, _>")]
    pub ping_interval_secs: u64,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PresenceConfig {
    pub enabled: bool,
    pub notices: bool,
    #[serde(deserialize_with = "within::<1, 3600, _, _>")]
    pub leave_grace_secs: u64,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StoreSettings {
    pub backend: Backend,
    /// Checked when the backend is Redis (see [`Settings::check`]).
    pub redis_url: String,
    /// A PEM file of the certificate authorities a `rediss://` server is checked against;
    /// `None` (empty) means the system's.
    #[serde(deserialize_with = "empty_as_none")]
    pub redis_tls_ca_file: Option<PathBuf>,
    #[serde(deserialize_with = "key_prefix")]
    pub key_prefix: String,
}

/// Where the room's log lives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Backend {
    Memory,
    Redis,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogSettings {
    pub format: LogFormat,
}

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line, for a log collector.
    Json,
}

/// The cookie key: empty (a random key per run) or at least 64 bytes. Never shown by
/// `Debug` or in logs.
#[derive(Clone)]
pub struct Secret(String);

impl Secret {
    /// Shortest secret accepted, in bytes.
    pub const MIN_BYTES: usize = 64;

    pub fn new(value: String) -> Self {
        Self(value)
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(..)")
    }
}

impl<'de> Deserialize<'de> for Secret {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let value = String::deserialize(d)?;
        let len = value.len();
        if len != 0 && len < Self::MIN_BYTES {
            return Err(de::Error::custom(format!(
                "is {len} bytes; use at least 64 random bytes (for example the output of \
                 `openssl rand -hex 64`), or leave it empty for a per-run key"
            )));
        }
        Ok(Self(value))
    }
}

/// `scheme://host[:port]` with an `http` or `https` scheme and nothing after the authority.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin(String);

impl Origin {
    pub fn parse(value: &str) -> Option<Self> {
        let (scheme, rest) = value.split_once("://")?;
        let valid = matches!(scheme, "http" | "https")
            && !rest.is_empty()
            && !rest.contains(['/', '?', '#', '@', ' ']);
        valid.then(|| Self(value.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl<'de> Deserialize<'de> for Origin {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let value = String::deserialize(d)?;
        Self::parse(&value).ok_or_else(|| {
            de::Error::custom(format!("{value:?} is not of the form scheme://host[:port]"))
        })
    }
}

/// A whole number from `MIN` to `MAX` (the key's declared range).
fn within<'de, const MIN: u64, const MAX: u64, D, T>(d: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: TryFrom<u64>,
{
    let n = u64::deserialize(d).map_err(|_: D::Error| out_of_range(MIN, MAX))?;
    if !(MIN..=MAX).contains(&n) {
        return Err(out_of_range(MIN, MAX));
    }
    T::try_from(n).map_err(|_| out_of_range(MIN, MAX))
}

fn out_of_range<E: de::Error>(min: u64, max: u64) -> E {
    E::custom(format!(
        "must be a whole number from {} to {}",
        thousands(min),
        thousands(max)
    ))
}

/// A rate: above 0, at most 1,000,000 a second.
fn per_sec<'de, D: Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
    const MAX: f64 = 1_000_000.0;
    let reason = || de::Error::custom("must be a number above 0, at most 1,000,000");
    let n = f64::deserialize(d).map_err(|_: D::Error| reason())?;
    if n.is_finite() && n > 0.0 && n <= MAX {
        Ok(n)
    } else {
        Err(reason())
    }
}

/// 1 to 64 characters without white space: every Redis key starts with it.
fn key_prefix<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    let prefix = String::deserialize(d)?;
    if prefix.is_empty() || prefix.len() > 64 || prefix.contains(char::is_whitespace) {
        return Err(de::Error::custom(
            "must be 1 to 64 characters without spaces",
        ));
    }
    Ok(prefix)
}

/// An optional path: the empty string means none.
fn empty_as_none<'de, D: Deserializer<'de>>(d: D) -> Result<Option<PathBuf>, D::Error> {
    let path = String::deserialize(d)?;
    Ok((!path.is_empty()).then(|| PathBuf::from(path)))
}

/// A list, given as a TOML array or (from the environment) as one comma-separated string.
fn list<'de, D, T>(d: D) -> Result<Vec<T>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Given<T> {
        Items(Vec<T>),
        Text(String),
    }
    use serde::de::value::StrDeserializer;
    match Given::<T>::deserialize(d)? {
        Given::Items(items) => Ok(items),
        Given::Text(text) => text
            .split(',')
            .map(str::trim)
            .filter(|item| !item.is_empty())
            .map(|item| T::deserialize(StrDeserializer::<D::Error>::new(item)))
            .collect(),
    }
}

/// `1000000` as `1,000,000`, as the docs write ranges.
fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, digit) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(digit);
    }
    out
}

/// What the command line may override.
#[derive(Debug, Default, Clone)]
pub struct CliOverrides {
    pub config_path: Option<PathBuf>,
    pub port: Option<u16>,
    pub address: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("config file {path} is not valid TOML: {message}")]
    Syntax { path: String, message: String },
    #[error("unknown setting `{0}`")]
    UnknownKey(String),
    #[error("bad value for `{key}`: {reason}")]
    BadValue { key: String, reason: String },
}

impl ConfigError {
    fn bad(key: &str, reason: impl Into<String>) -> Self {
        Self::BadValue {
            key: key.to_owned(),
            reason: reason.into(),
        }
    }

    /// The first problem figment found, named by its key.
    fn from_figment(error: figment::Error) -> Self {
        use figment::error::Kind;
        let key = error.path.join(".");
        match &error.kind {
            // figment's path already ends with the unknown key.
            Kind::UnknownField(field, _) if error.path.last() == Some(field) => {
                Self::UnknownKey(key)
            }
            Kind::UnknownField(field, _) if key.is_empty() => Self::UnknownKey(field.clone()),
            Kind::UnknownField(field, _) => Self::UnknownKey(format!("{key}.{field}")),
            Kind::Message(message) => Self::bad(&key, message.clone()),
            Kind::UnknownVariant(value, expected) => Self::bad(
                &key,
                format!(
                    "{value:?} is not one of {}",
                    expected
                        .iter()
                        .map(|v| format!("{v:?}"))
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            ),
            other => Self::bad(&key, other.to_string()),
        }
    }
}

impl Settings {
    /// Loads settings for a real start: `--config PATH`, else `./config.toml` when present.
    pub fn load(cli: &CliOverrides) -> Result<Self, ConfigError> {
        let file = match &cli.config_path {
            Some(path) => Some(path.clone()),
            None => Some(PathBuf::from("config.toml")).filter(|p| p.is_file()),
        };
        Self::load_from(file.as_deref(), std::env::vars(), cli)
    }

    /// The embedded defaults alone (what tests start from).
    pub fn defaults() -> Self {
        // The embedded file is checked by a unit test, so this cannot fail at run time.
        Self::load_from(None, std::iter::empty(), &CliOverrides::default())
            .expect("embedded config.toml is valid")
    }

    pub fn load_from(
        file: Option<&Path>,
        env: impl IntoIterator<Item = (String, String)>,
        cli: &CliOverrides,
    ) -> Result<Self, ConfigError> {
        let mut figment = Figment::from(Toml::string(DEFAULTS));
        if let Some(path) = file {
            let shown = path.display().to_string();
            let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
                path: shown.clone(),
                source,
            })?;
            // Parsed here first, so a syntax error names the file rather than "a string".
            text.parse::<toml::Table>()
                .map_err(|e| ConfigError::Syntax {
                    path: shown,
                    message: e.to_string(),
                })?;
            figment = figment.merge(Toml::string(&text));
        }
        figment = figment.merge(Environment::read(env)?);
        if let Some(port) = cli.port {
            figment = figment.merge(Serialized::default("server.port", port));
        }
        if let Some(address) = &cli.address {
            figment = figment.merge(Serialized::default("server.address", address));
        }
        // Lossy: an environment value is text, read as a number or a boolean where the key
        // takes one.
        let settings: Self = figment.extract_lossy().map_err(ConfigError::from_figment)?;
        settings.check()?;
        Ok(settings)
    }

    /// The rules that tie keys together (each key's own range is on its field).
    fn check(&self) -> Result<(), ConfigError> {
        if self.store.backend == Backend::Redis {
            let url = &self.store.redis_url;
            if !["redis://", "rediss://", "redis+unix://", "unix://"]
                .iter()
                .any(|scheme| url.starts_with(scheme))
            {
                return Err(ConfigError::bad(
                    "store.redis_url",
                    "must be a redis://, rediss:// or redis+unix:// URL",
                ));
            }
            if self.security.cookie_secret.expose().is_empty() {
                return Err(ConfigError::bad(
                    "security.cookie_secret",
                    "must be set with store.backend = \"redis\": every instance needs \
                     the same key to read the others' cookies and tokens",
                ));
            }
            if let Some(ca) = &self.store.redis_tls_ca_file {
                if !url.starts_with("rediss://") {
                    return Err(ConfigError::bad(
                        "store.redis_tls_ca_file",
                        "is for TLS: store.redis_url must then be a rediss:// URL",
                    ));
                }
                if !ca.is_file() {
                    return Err(ConfigError::bad(
                        "store.redis_tls_ca_file",
                        format!("{} is not a readable file", ca.display()),
                    ));
                }
            }
        }
        Ok(())
    }
}

/// `CHATDEMO_<SECTION>__<KEY>` variables as a figment provider. Every value is text (so a
/// secret of digits stays text); a name that is not a known key is refused here, by its own
/// name.
struct Environment(Dict);

impl Environment {
    fn read(vars: impl IntoIterator<Item = (String, String)>) -> Result<Self, ConfigError> {
        let known: toml::Table = DEFAULTS
            .parse()
            .expect("the embedded config.toml is valid TOML");
        let mut sections = Dict::new();
        for (name, raw) in vars {
            let Some(rest) = name.strip_prefix(ENV_PREFIX) else {
                continue;
            };
            let path = rest
                .split_once("__")
                .map(|(s, k)| (s.to_ascii_lowercase(), k.to_ascii_lowercase()));
            let Some((section, key)) = path.filter(|(section, key)| {
                known
                    .get(section)
                    .and_then(|s| s.as_table())
                    .is_some_and(|keys| keys.contains_key(key))
            }) else {
                return Err(ConfigError::UnknownKey(name));
            };
            let entry = sections
                .entry(section)
                .or_insert_with(|| Value::from(Dict::new()));
            if let Value::Dict(_, keys) = entry {
                keys.insert(key, Value::from(raw));
            }
        }
        Ok(Self(sections))
    }
}

impl Provider for Environment {
    fn metadata(&self) -> Metadata {
        Metadata::named("CHATDEMO_ environment variables")
    }

    fn data(&self) -> Result<Map<Profile, Dict>, figment::Error> {
        Ok(Profile::Default.collect(self.0.clone()))
    }
}

impl RoomSettings {
    pub fn poll_timeout(&self) -> Duration {
        Duration::from_secs(self.poll_timeout_secs)
    }

    /// Largest form body accepted by the POST routes. A message of `max_message_chars`
    /// four-byte characters, fully percent-encoded, is 12 bytes a character; the rest is
    /// room for `_xsrf`, `next` and the field names.
    pub fn form_limit_bytes(&self) -> usize {
        self.max_message_chars
            .saturating_mul(12)
            .saturating_add(4096)
    }
}

impl ServerSettings {
    /// The connection limit under `open_files`, the process's open-file limit: the
    /// configured one, or by default the limit less room for everything else that needs a
    /// descriptor (the listener, Redis, logs, accepts in progress), so the 503 comes
    /// before the descriptors run out. A configured value above that room is an error.
    pub fn connection_limit(&self, open_files: Option<u64>) -> Result<usize, ConfigError> {
        let Some(open_files) = open_files else {
            return Ok(match self.max_connections {
                0 => 50_000,
                n => n,
            });
        };
        let headroom = 64 + open_files / 10;
        let room = usize::try_from(open_files.saturating_sub(headroom)).unwrap_or(usize::MAX);
        match self.max_connections {
            0 => Ok(room.max(1)),
            n if n <= room => Ok(n),
            n => Err(ConfigError::bad(
                "server.max_connections",
                format!(
                    "{n} is more than this process can hold open: its open-file limit is \
                     {open_files}, leaving room for {room} connections (set 0 to derive it)"
                ),
            )),
        }
    }

    /// One address's share of `limit` (the connection limit in force).
    pub fn address_share(&self, limit: usize) -> usize {
        match self.max_connections_per_address {
            0 => (limit / 10).max(1),
            n => n.min(limit),
        }
    }

    pub fn body_timeout(&self) -> Duration {
        Duration::from_secs(self.body_timeout_secs)
    }

    pub fn write_timeout(&self) -> Duration {
        Duration::from_secs(self.write_timeout_secs)
    }
}

impl WebSocketSettings {
    pub fn ping_interval(&self) -> Duration {
        Duration::from_secs(self.ping_interval_secs)
    }
}

impl PresenceConfig {
    pub fn leave_grace(&self) -> Duration {
        Duration::from_secs(self.leave_grace_secs)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn load_env(pairs: &[(&str, &str)]) -> Result<Settings, ConfigError> {
        Settings::load_from(None, env(pairs), &CliOverrides::default())
    }

    #[test]
    fn embedded_defaults_serve_on_8888() {
        let s = Settings::defaults();
        assert_eq!(s.server.address, IpAddr::from([127, 0, 0, 1]));
        assert_eq!(s.server.port, 8888);
        assert_eq!(s.room.cache_size, 200);
        assert_eq!(s.room.poll_timeout_secs, 25);
        assert_eq!(s.room.max_message_chars, 2000);
        assert_eq!(s.websocket.max_frame_bytes, 65536);
        assert_eq!(s.store.backend, Backend::Memory);
        assert_eq!(s.log.format, LogFormat::Text);
        assert_eq!(s.server.assets_dir, None);
        assert_eq!(s.store.redis_tls_ca_file, None);
    }

    #[test]
    fn environment_overrides_a_key_with_its_type() {
        let s = load_env(&[
            ("CHATDEMO_ROOM__POLL_TIMEOUT_SECS", "2"),
            ("CHATDEMO_ROOM__RATE_PER_SEC", "2.5"),
            ("CHATDEMO_SECURITY__COOKIE_SECURE", "true"),
            (
                "CHATDEMO_SECURITY__ALLOWED_ORIGINS",
                "https://a.example, http://b.example:8080",
            ),
            ("CHATDEMO_SERVER__TRUSTED_PROXIES", "127.0.0.1,::1"),
            ("CHATDEMO_STORE__BACKEND", "redis"),
            ("CHATDEMO_SECURITY__COOKIE_SECRET", &"7".repeat(64)),
            ("CHATDEMO_STORE__KEY_PREFIX", "123"),
            ("CHATDEMO_LOG__FORMAT", "json"),
            ("OTHER_VARIABLE", "ignored"),
        ])
        .unwrap();
        assert_eq!(s.room.poll_timeout_secs, 2);
        assert_eq!(s.room.rate_per_sec, 2.5);
        assert!(s.security.cookie_secure);
        let origins: Vec<&str> = s
            .security
            .allowed_origins
            .iter()
            .map(Origin::as_str)
            .collect();
        assert_eq!(origins, ["https://a.example", "http://b.example:8080"]);
        assert_eq!(
            s.server.trusted_proxies,
            [IpAddr::from([127, 0, 0, 1]), "::1".parse().unwrap()]
        );
        assert_eq!(s.store.backend, Backend::Redis);
        // Text stays text, even when it looks like a number.
        assert_eq!(s.security.cookie_secret.expose(), "7".repeat(64));
        assert_eq!(s.store.key_prefix, "123");
        assert_eq!(s.log.format, LogFormat::Json);
    }

    #[test]
    fn command_line_wins_over_environment() {
        let cli = CliOverrides {
            port: Some(9999),
            address: Some("127.0.0.2".into()),
            ..Default::default()
        };
        let s = Settings::load_from(None, env(&[("CHATDEMO_SERVER__PORT", "7777")]), &cli).unwrap();
        assert_eq!(s.server.port, 9999);
        assert_eq!(s.server.address, IpAddr::from([127, 0, 0, 2]));
        let bad = CliOverrides {
            address: Some("localhost".into()),
            ..Default::default()
        };
        let err = Settings::load_from(None, env(&[]), &bad).unwrap_err();
        assert!(err.to_string().contains("server.address"), "{err}");
    }

    #[test]
    fn unknown_environment_key_is_named() {
        for name in [
            "CHATDEMO_ROOM__CACHE_SIZ",
            "CHATDEMO_ROOMS__CACHE_SIZE",
            "CHATDEMO_CACHE_SIZE",
        ] {
            let err = load_env(&[(name, "3")]).unwrap_err();
            assert_eq!(err.to_string(), format!("unknown setting `{name}`"));
        }
    }

    #[test]
    fn bad_environment_value_is_named() {
        let err = load_env(&[("CHATDEMO_SERVER__PORT", "eighty")]).unwrap_err();
        assert!(err.to_string().contains("server.port"), "{err}");
    }

    #[test]
    fn unknown_file_key_and_wrong_type_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.toml");
        let load = |text: &str| {
            std::fs::write(&path, text).unwrap();
            Settings::load_from(Some(&path), env(&[]), &CliOverrides::default())
                .unwrap_err()
                .to_string()
        };
        assert_eq!(
            load("[room]\ncache_sise = 3\n"),
            "unknown setting `room.cache_sise`"
        );
        assert!(load("[room]\ncache_size = \"big\"\n").contains("`room.cache_size`"));
        assert_eq!(load("[rooms]\ncache_size = 3\n"), "unknown setting `rooms`");
        let syntax = load("[room\n");
        assert!(
            syntax.starts_with(&format!("config file {} is not valid TOML", path.display())),
            "{syntax}"
        );
        let missing = dir.path().join("missing.toml");
        let err = Settings::load_from(Some(&missing), env(&[]), &CliOverrides::default())
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("cannot read config file"), "{err}");
    }

    #[test]
    fn file_values_override_defaults() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.toml");
        std::fs::write(
            &path,
            "[room]\ncache_size = 5\nrate_per_sec = 3\n[server]\ntrusted_proxies = [\"10.0.0.1\"]\n",
        )
        .unwrap();
        let s = Settings::load_from(Some(&path), env(&[]), &CliOverrides::default()).unwrap();
        assert_eq!(s.room.cache_size, 5);
        assert_eq!(s.room.rate_per_sec, 3.0);
        assert_eq!(s.server.port, 8888);
        assert_eq!(s.server.trusted_proxies, [IpAddr::from([10, 0, 0, 1])]);
    }

    #[test]
    fn short_cookie_secret_is_refused() {
        let err = load_env(&[("CHATDEMO_SECURITY__COOKIE_SECRET", "too-short")]).unwrap_err();
        assert!(err.to_string().contains("security.cookie_secret"), "{err}");
        assert!(err.to_string().contains("64"), "{err}");
    }

    #[test]
    fn out_of_range_values_are_refused_naming_the_key_and_the_range() {
        for (key, value, message) in [
            (
                "CHATDEMO_ROOM__CACHE_SIZE",
                "0",
                "bad value for `room.cache_size`: must be a whole number from 1 to 100,000",
            ),
            (
                "CHATDEMO_ROOM__CACHE_SIZE",
                "100001",
                "bad value for `room.cache_size`: must be a whole number from 1 to 100,000",
            ),
            (
                "CHATDEMO_ROOM__RATE_PER_SEC",
                "-1",
                "bad value for `room.rate_per_sec`: must be a number above 0, at most 1,000,000",
            ),
            (
                "CHATDEMO_SERVER__WORKERS",
                "100000",
                "bad value for `server.workers`: must be a whole number from 0 to 512",
            ),
            (
                "CHATDEMO_WEBSOCKET__MAX_FRAME_BYTES",
                "1000000000",
                "bad value for `websocket.max_frame_bytes`: must be a whole number from 1,024 \
                 to 16,777,216",
            ),
            (
                "CHATDEMO_STORE__KEY_PREFIX",
                "",
                "bad value for `store.key_prefix`: must be 1 to 64 characters without spaces",
            ),
            (
                "CHATDEMO_SECURITY__ALLOWED_ORIGINS",
                "https://a.example/path",
                "bad value for `security.allowed_origins`: \"https://a.example/path\" is not \
                 of the form scheme://host[:port]",
            ),
            (
                "CHATDEMO_STORE__BACKEND",
                "postgres",
                "bad value for `store.backend`: \"postgres\" is not one of \"memory\", \"redis\"",
            ),
            (
                "CHATDEMO_LOG__FORMAT",
                "xml",
                "bad value for `log.format`: \"xml\" is not one of \"text\", \"json\"",
            ),
        ] {
            let err = load_env(&[(key, value)]).unwrap_err();
            assert_eq!(err.to_string(), message, "{key}={value}");
        }
        for (key, value, dotted) in [
            ("CHATDEMO_SERVER__ADDRESS", "localhost:80", "server.address"),
            (
                "CHATDEMO_ROOM__MAX_MESSAGE_CHARS",
                "999999999999999999",
                "room.max_message_chars",
            ),
            (
                "CHATDEMO_SERVER__TRUSTED_PROXIES",
                "127.0.0.1,nginx",
                "server.trusted_proxies",
            ),
            (
                "CHATDEMO_PRESENCE__LEAVE_GRACE_SECS",
                "0",
                "presence.leave_grace_secs",
            ),
            ("CHATDEMO_SERVER__PORT", "70000", "server.port"),
            ("CHATDEMO_PRESENCE__ENABLED", "maybe", "presence.enabled"),
        ] {
            let err = load_env(&[(key, value)]).unwrap_err();
            assert!(
                err.to_string()
                    .starts_with(&format!("bad value for `{dotted}`")),
                "{key}: {err}"
            );
        }
    }

    #[test]
    fn redis_needs_a_shared_cookie_secret_a_redis_url_and_a_readable_ca_file() {
        let err = load_env(&[("CHATDEMO_STORE__BACKEND", "redis")]).unwrap_err();
        assert!(err.to_string().contains("security.cookie_secret"), "{err}");
        let secret = "s".repeat(64);
        let with_secret = [
            ("CHATDEMO_STORE__BACKEND", "redis"),
            ("CHATDEMO_SECURITY__COOKIE_SECRET", secret.as_str()),
        ];
        let s = load_env(&with_secret).unwrap();
        assert_eq!(s.store.backend, Backend::Redis);
        assert_eq!(s.store.key_prefix, "chatdemo");
        let mut bad_url = with_secret.to_vec();
        bad_url.push(("CHATDEMO_STORE__REDIS_URL", "http://127.0.0.1:6379"));
        let err = load_env(&bad_url).unwrap_err();
        assert!(err.to_string().contains("store.redis_url"), "{err}");
        let mut no_ca = with_secret.to_vec();
        no_ca.push(("CHATDEMO_STORE__REDIS_URL", "rediss://127.0.0.1:6380/0"));
        no_ca.push(("CHATDEMO_STORE__REDIS_TLS_CA_FILE", "/no/such/ca.pem"));
        let err = load_env(&no_ca).unwrap_err();
        assert!(err.to_string().contains("store.redis_tls_ca_file"), "{err}");
        let here = concat!(env!("CARGO_MANIFEST_DIR"), "/config.toml");
        let mut plain = with_secret.to_vec();
        plain.push(("CHATDEMO_STORE__REDIS_TLS_CA_FILE", here));
        let err = load_env(&plain).unwrap_err();
        assert!(err.to_string().contains("rediss://"), "{err}");
    }

    #[test]
    fn the_connection_limit_stays_below_the_open_file_limit() {
        let mut s = Settings::defaults();
        assert_eq!(s.server.max_connections, 0);
        assert_eq!(
            s.server.connection_limit(Some(1024)).unwrap(),
            1024 - 64 - 102
        );
        assert_eq!(s.server.connection_limit(None).unwrap(), 50_000);
        s.server.max_connections = 500;
        assert_eq!(s.server.connection_limit(Some(1024)).unwrap(), 500);
        s.server.max_connections = 50_000;
        let err = s.server.connection_limit(Some(1024)).unwrap_err();
        assert!(err.to_string().contains("server.max_connections"), "{err}");
    }

    #[test]
    fn secret_is_not_printed_by_debug() {
        let s = Secret::new("hunter2".repeat(10));
        assert!(!format!("{s:?}").contains("hunter2"));
    }

    #[test]
    fn thousands_are_separated_as_the_docs_write_them() {
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(512), "512");
        assert_eq!(thousands(1024), "1,024");
        assert_eq!(thousands(100_000), "100,000");
        assert_eq!(thousands(16_777_216), "16,777,216");
    }
}
