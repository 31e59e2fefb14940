//! Typed settings. Layers, later ones winning: the `config.toml` embedded in the binary
//! (it holds every key, so it doubles as the schema), a config file, `CHATDEMO_<SECTION>__<KEY>`
//! environment variables, then the command line. Unknown keys and bad values are errors that
//! name the key, so a typo never silently falls back to a default.

use std::fmt;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use toml::{Table, Value};

/// The shipped `config.toml`, used as defaults and as the list of known keys.
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
pub struct PresenceConfig {
    pub enabled: bool,
    pub notices: bool,
    pub leave_grace_secs: u64,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StoreSettings {
    /// `memory` or `redis`; read through [`StoreSettings::backend`].
    backend: String,
    pub redis_url: String,
    pub key_prefix: String,
}

/// Where the room's log lives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Memory,
    Redis,
}

impl StoreSettings {
    pub fn backend(&self) -> Backend {
        match self.backend.as_str() {
            "redis" => Backend::Redis,
            _ => Backend::Memory,
        }
    }

    pub fn set_backend(&mut self, backend: Backend) {
        self.backend = match backend {
            Backend::Memory => "memory",
            Backend::Redis => "redis",
        }
        .to_owned();
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerSettings {
    pub address: String,
    pub port: u16,
    /// 0 means one worker per core.
    pub workers: usize,
    /// 0 means derived from the open-file limit (see [`ServerSettings::connection_limit`]).
    pub max_connections: usize,
    /// A theme directory with `templates/` and `static/`; empty means the built-in files.
    pub assets_dir: String,
    /// Peers whose `X-Forwarded-*` headers are believed (a reverse proxy in front).
    pub trusted_proxies: Vec<String>,
    /// How long a POST body may take to arrive in full.
    pub body_timeout_secs: u64,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SecuritySettings {
    pub cookie_secret: Secret,
    pub cookie_max_age_days: u32,
    pub cookie_secure: bool,
    pub allowed_origins: Vec<String>,
    /// New logins per client address: a burst, then a steady rate.
    pub login_burst: u32,
    pub login_per_sec: f64,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RoomSettings {
    pub cache_size: usize,
    pub poll_timeout_secs: u64,
    pub max_message_chars: usize,
    pub rate_burst: u32,
    pub rate_per_sec: f64,
    /// Posts per client address, across all its logins.
    pub address_burst: u32,
    pub address_per_sec: f64,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebSocketSettings {
    pub max_frame_bytes: usize,
    pub ping_interval_secs: u64,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogSettings {
    /// `text` or `json`; read through [`LogSettings::format`].
    format: String,
}

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line, for a log collector.
    Json,
}

impl LogSettings {
    pub fn format(&self) -> LogFormat {
        match self.format.as_str() {
            "json" => LogFormat::Json,
            _ => LogFormat::Text,
        }
    }
}

/// A string that never shows up in `Debug` output or logs.
#[derive(Clone, Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
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
        let mut table: Table =
            DEFAULTS
                .parse()
                .map_err(|e: toml::de::Error| ConfigError::Syntax {
                    path: "<embedded config.toml>".into(),
                    message: e.message().to_owned(),
                })?;
        let schema = table.clone();

        if let Some(path) = file {
            let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
                path: path.display().to_string(),
                source,
            })?;
            let overlay: Table =
                text.parse()
                    .map_err(|e: toml::de::Error| ConfigError::Syntax {
                        path: path.display().to_string(),
                        message: e.to_string(),
                    })?;
            merge_file(&schema, &mut table, overlay)?;
        }

        for (name, raw) in env {
            let Some(rest) = name.strip_prefix(ENV_PREFIX) else {
                continue;
            };
            let Some((section, key)) = rest.split_once("__") else {
                return Err(ConfigError::UnknownKey(name));
            };
            let (section, key) = (section.to_ascii_lowercase(), key.to_ascii_lowercase());
            let dotted = format!("{section}.{key}");
            let default = lookup(&schema, &section, &key).ok_or(ConfigError::UnknownKey(name))?;
            let value = parse_env_value(&dotted, default, &raw)?;
            set(&mut table, &section, &key, value);
        }

        if let Some(port) = cli.port {
            set(&mut table, "server", "port", Value::Integer(port.into()));
        }
        if let Some(address) = &cli.address {
            set(
                &mut table,
                "server",
                "address",
                Value::String(address.clone()),
            );
        }

        // Through text, so a value of the wrong kind or size (`-1` for a count, 70000 for
        // the port) comes back with a place in the text, and so with the key to name.
        let text =
            toml::to_string(&table).map_err(|e| ConfigError::bad("config", e.to_string()))?;
        let settings: Settings = toml::from_str(&text).map_err(|e: toml::de::Error| {
            let key = e.span().and_then(|span| key_at(&text, span.start));
            ConfigError::bad(key.as_deref().unwrap_or("config"), e.message())
        })?;
        settings.validate()?;
        Ok(settings)
    }

    fn validate(&self) -> Result<(), ConfigError> {
        if self.server.address.parse::<IpAddr>().is_err() {
            return Err(ConfigError::bad("server.address", "not an IP address"));
        }
        for proxy in &self.server.trusted_proxies {
            if proxy.parse::<IpAddr>().is_err() {
                return Err(ConfigError::bad(
                    "server.trusted_proxies",
                    format!("{proxy:?} is not an IP address"),
                ));
            }
        }
        if !(1..=3600).contains(&self.server.body_timeout_secs) {
            return Err(ConfigError::bad(
                "server.body_timeout_secs",
                "must be 1 to 3600",
            ));
        }
        if self.server.workers > 512 {
            return Err(ConfigError::bad(
                "server.workers",
                "must be 0 (one per core) to 512",
            ));
        }
        let secret_len = self.security.cookie_secret.expose().len();
        if secret_len != 0 && secret_len < 64 {
            return Err(ConfigError::bad(
                "security.cookie_secret",
                format!(
                    "is {secret_len} bytes; use at least 64 random bytes \
                     (for example the output of `openssl rand -hex 64`), or leave it empty for a per-run key"
                ),
            ));
        }
        if !(1..=3650).contains(&self.security.cookie_max_age_days) {
            return Err(ConfigError::bad(
                "security.cookie_max_age_days",
                "must be 1 to 3650",
            ));
        }
        for origin in &self.security.allowed_origins {
            if !is_origin(origin) {
                return Err(ConfigError::bad(
                    "security.allowed_origins",
                    format!("{origin:?} is not of the form scheme://host[:port]"),
                ));
            }
        }
        let room = &self.room;
        if !(1..=100_000).contains(&room.cache_size) {
            return Err(ConfigError::bad("room.cache_size", "must be 1 to 100,000"));
        }
        if !(1..=3600).contains(&room.poll_timeout_secs) {
            return Err(ConfigError::bad(
                "room.poll_timeout_secs",
                "must be 1 to 3600",
            ));
        }
        if !(1..=100_000).contains(&room.max_message_chars) {
            return Err(ConfigError::bad(
                "room.max_message_chars",
                "must be 1 to 100,000",
            ));
        }
        let security = &self.security;
        check_rate(
            ("room.rate_burst", room.rate_burst),
            ("room.rate_per_sec", room.rate_per_sec),
        )?;
        check_rate(
            ("room.address_burst", room.address_burst),
            ("room.address_per_sec", room.address_per_sec),
        )?;
        check_rate(
            ("security.login_burst", security.login_burst),
            ("security.login_per_sec", security.login_per_sec),
        )?;
        if !(1..=3600).contains(&self.presence.leave_grace_secs) {
            return Err(ConfigError::bad(
                "presence.leave_grace_secs",
                "must be 1 to 3600",
            ));
        }
        if !matches!(self.store.backend.as_str(), "memory" | "redis") {
            return Err(ConfigError::bad(
                "store.backend",
                "must be \"memory\" or \"redis\"",
            ));
        }
        if self.store.backend() == Backend::Redis {
            let url = &self.store.redis_url;
            if !["redis://", "rediss://", "redis+unix://", "unix://"]
                .iter()
                .any(|scheme| url.starts_with(scheme))
            {
                return Err(ConfigError::bad(
                    "store.redis_url",
                    "must be redis://, rediss:// or redis+unix:// URL",
                ));
            }
            if self.security.cookie_secret.expose().is_empty() {
                return Err(ConfigError::bad(
                    "security.cookie_secret",
                    "must be set with store.backend = \"redis\": every instance needs \
                     the same key to read the others' cookies and tokens",
                ));
            }
        }
        let prefix = &self.store.key_prefix;
        if prefix.is_empty() || prefix.len() > 64 || prefix.contains(char::is_whitespace) {
            return Err(ConfigError::bad(
                "store.key_prefix",
                "must be 1 to 64 characters without spaces",
            ));
        }
        if !matches!(self.log.format.as_str(), "text" | "json") {
            return Err(ConfigError::bad(
                "log.format",
                "must be \"text\" or \"json\"",
            ));
        }
        if !(1024..=16 << 20).contains(&self.websocket.max_frame_bytes) {
            return Err(ConfigError::bad(
                "websocket.max_frame_bytes",
                "must be 1024 to 16 MiB",
            ));
        }
        // Bounded above too: the socket's timers add it to the clock.
        if !(1..=3600).contains(&self.websocket.ping_interval_secs) {
            return Err(ConfigError::bad(
                "websocket.ping_interval_secs",
                "must be 1 to 3600",
            ));
        }
        Ok(())
    }
}

/// A token bucket's settings (each with its key): a burst of 1 to 1,000,000 and a rate
/// above 0, at most 1,000,000 a second.
fn check_rate(
    (burst_key, burst): (&str, u32),
    (rate_key, per_sec): (&str, f64),
) -> Result<(), ConfigError> {
    if !(1..=1_000_000).contains(&burst) {
        return Err(ConfigError::bad(burst_key, "must be 1 to 1,000,000"));
    }
    if !(per_sec.is_finite() && per_sec > 0.0 && per_sec <= 1_000_000.0) {
        return Err(ConfigError::bad(
            rate_key,
            "must be a number above 0, at most 1,000,000",
        ));
    }
    Ok(())
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

    /// The trusted proxies' addresses (checked by `validate`).
    pub fn trusted_proxies(&self) -> Vec<IpAddr> {
        self.trusted_proxies
            .iter()
            .filter_map(|p| p.parse().ok())
            .collect()
    }
}

impl WebSocketSettings {
    pub fn ping_interval(&self) -> Duration {
        Duration::from_secs(self.ping_interval_secs)
    }
}

/// The `section.key` whose line holds byte `offset` of a TOML text of plain sections.
fn key_at(text: &str, offset: usize) -> Option<String> {
    let before = text.get(..offset)?;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let key = text[line_start..].split('=').next()?.trim();
    let section = before[..line_start]
        .lines()
        .rev()
        .find_map(|line| line.trim().strip_prefix('[')?.strip_suffix(']'))?;
    (!key.is_empty()).then(|| format!("{section}.{key}"))
}

fn lookup<'a>(table: &'a Table, section: &str, key: &str) -> Option<&'a Value> {
    table.get(section)?.as_table()?.get(key)
}

fn set(table: &mut Table, section: &str, key: &str, value: Value) {
    if let Some(Value::Table(section)) = table.get_mut(section) {
        section.insert(key.to_owned(), value);
    }
}

/// Overlays a parsed file, refusing keys the schema lacks and values of another type.
fn merge_file(schema: &Table, table: &mut Table, overlay: Table) -> Result<(), ConfigError> {
    for (section, values) in overlay {
        let Value::Table(values) = values else {
            return Err(ConfigError::UnknownKey(section));
        };
        for (key, value) in values {
            let dotted = format!("{section}.{key}");
            let default =
                lookup(schema, &section, &key).ok_or(ConfigError::UnknownKey(dotted.clone()))?;
            let value = coerce(&dotted, default, value)?;
            set(table, &section, &key, value);
        }
    }
    Ok(())
}

/// Checks a file value against the default's type (an integer may stand for a float).
fn coerce(key: &str, default: &Value, value: Value) -> Result<Value, ConfigError> {
    match (default, value) {
        (Value::Float(_), Value::Integer(i)) => Ok(Value::Float(i as f64)),
        (Value::Array(_), Value::Array(items)) => {
            if items.iter().all(Value::is_str) {
                Ok(Value::Array(items))
            } else {
                Err(ConfigError::bad(key, "expected a list of strings"))
            }
        }
        (d, v) if d.same_type(&v) => Ok(v),
        (d, v) => Err(ConfigError::bad(
            key,
            format!("expected {}, found {}", d.type_str(), v.type_str()),
        )),
    }
}

/// Environment values are plain text; the default's type says how to read them.
fn parse_env_value(key: &str, default: &Value, raw: &str) -> Result<Value, ConfigError> {
    let raw_trimmed = raw.trim();
    match default {
        Value::String(_) => Ok(Value::String(raw.to_owned())),
        Value::Integer(_) => raw_trimmed
            .parse::<i64>()
            .map(Value::Integer)
            .map_err(|_| ConfigError::bad(key, format!("{raw:?} is not a whole number"))),
        Value::Float(_) => raw_trimmed
            .parse::<f64>()
            .map(Value::Float)
            .map_err(|_| ConfigError::bad(key, format!("{raw:?} is not a number"))),
        Value::Boolean(_) => match raw_trimmed {
            "true" | "1" => Ok(Value::Boolean(true)),
            "false" | "0" => Ok(Value::Boolean(false)),
            _ => Err(ConfigError::bad(
                key,
                format!("{raw:?} is not true or false"),
            )),
        },
        // A list is comma-separated: CHATDEMO_SECURITY__ALLOWED_ORIGINS=https://a,https://b
        Value::Array(_) => Ok(Value::Array(
            raw.split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(|s| Value::String(s.to_owned()))
                .collect(),
        )),
        _ => Err(ConfigError::bad(key, "cannot be set from the environment")),
    }
}

/// `scheme://host[:port]`, nothing after the authority.
fn is_origin(value: &str) -> bool {
    let Some((scheme, rest)) = value.split_once("://") else {
        return false;
    };
    matches!(scheme, "http" | "https")
        && !rest.is_empty()
        && !rest.contains(['/', '?', '#', '@', ' '])
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

    #[test]
    fn embedded_defaults_serve_on_8888() {
        let s = Settings::defaults();
        assert_eq!(s.server.address, "127.0.0.1");
        assert_eq!(s.server.port, 8888);
        assert_eq!(s.room.cache_size, 200);
        assert_eq!(s.room.poll_timeout_secs, 25);
        assert_eq!(s.room.max_message_chars, 2000);
        assert_eq!(s.websocket.max_frame_bytes, 65536);
    }

    #[test]
    fn environment_overrides_a_key_with_its_type() {
        let s = Settings::load_from(
            None,
            env(&[
                ("CHATDEMO_ROOM__POLL_TIMEOUT_SECS", "2"),
                ("CHATDEMO_ROOM__RATE_PER_SEC", "2.5"),
                ("CHATDEMO_SECURITY__COOKIE_SECURE", "true"),
                (
                    "CHATDEMO_SECURITY__ALLOWED_ORIGINS",
                    "https://a.example, http://b.example:8080",
                ),
                ("OTHER_VARIABLE", "ignored"),
            ]),
            &CliOverrides::default(),
        )
        .unwrap();
        assert_eq!(s.room.poll_timeout_secs, 2);
        assert_eq!(s.room.rate_per_sec, 2.5);
        assert!(s.security.cookie_secure);
        assert_eq!(
            s.security.allowed_origins,
            ["https://a.example", "http://b.example:8080"]
        );
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
        assert_eq!(s.server.address, "127.0.0.2");
    }

    #[test]
    fn unknown_environment_key_is_named() {
        let err = Settings::load_from(
            None,
            env(&[("CHATDEMO_ROOM__CACHE_SIZ", "3")]),
            &CliOverrides::default(),
        )
        .unwrap_err();
        assert!(
            err.to_string().contains("CHATDEMO_ROOM__CACHE_SIZ"),
            "{err}"
        );
    }

    #[test]
    fn bad_environment_value_is_named() {
        let err = Settings::load_from(
            None,
            env(&[("CHATDEMO_SERVER__PORT", "eighty")]),
            &CliOverrides::default(),
        )
        .unwrap_err();
        assert!(err.to_string().contains("server.port"), "{err}");
    }

    #[test]
    fn unknown_file_key_and_wrong_type_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.toml");
        std::fs::write(&path, "[room]\ncache_sise = 3\n").unwrap();
        let err = Settings::load_from(Some(&path), env(&[]), &CliOverrides::default()).unwrap_err();
        assert!(err.to_string().contains("room.cache_sise"), "{err}");

        std::fs::write(&path, "[room]\ncache_size = \"big\"\n").unwrap();
        let err = Settings::load_from(Some(&path), env(&[]), &CliOverrides::default()).unwrap_err();
        assert!(err.to_string().contains("room.cache_size"), "{err}");

        std::fs::write(&path, "[rooms]\ncache_size = 3\n").unwrap();
        let err = Settings::load_from(Some(&path), env(&[]), &CliOverrides::default()).unwrap_err();
        assert!(err.to_string().contains("rooms"), "{err}");
    }

    #[test]
    fn file_values_override_defaults() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.toml");
        std::fs::write(&path, "[room]\ncache_size = 5\nrate_per_sec = 3\n").unwrap();
        let s = Settings::load_from(Some(&path), env(&[]), &CliOverrides::default()).unwrap();
        assert_eq!(s.room.cache_size, 5);
        assert_eq!(s.room.rate_per_sec, 3.0);
        assert_eq!(s.server.port, 8888);
    }

    #[test]
    fn short_cookie_secret_is_refused() {
        let err = Settings::load_from(
            None,
            env(&[("CHATDEMO_SECURITY__COOKIE_SECRET", "too-short")]),
            &CliOverrides::default(),
        )
        .unwrap_err();
        assert!(err.to_string().contains("security.cookie_secret"), "{err}");
        assert!(err.to_string().contains("64"), "{err}");
    }

    #[test]
    fn out_of_range_values_are_refused() {
        for (key, value, dotted) in [
            ("CHATDEMO_ROOM__CACHE_SIZE", "0", "room.cache_size"),
            ("CHATDEMO_ROOM__RATE_PER_SEC", "-1", "room.rate_per_sec"),
            ("CHATDEMO_SERVER__ADDRESS", "localhost:80", "server.address"),
            ("CHATDEMO_LOG__FORMAT", "xml", "log.format"),
            ("CHATDEMO_SERVER__WORKERS", "100000", "server.workers"),
            (
                "CHATDEMO_ROOM__MAX_MESSAGE_CHARS",
                "999999999999999999",
                "room.max_message_chars",
            ),
            ("CHATDEMO_ROOM__CACHE_SIZE", "100001", "room.cache_size"),
            (
                "CHATDEMO_WEBSOCKET__MAX_FRAME_BYTES",
                "1000000000",
                "websocket.max_frame_bytes",
            ),
            (
                "CHATDEMO_SERVER__TRUSTED_PROXIES",
                "127.0.0.1,nginx",
                "server.trusted_proxies",
            ),
            ("CHATDEMO_STORE__BACKEND", "postgres", "store.backend"),
            (
                "CHATDEMO_PRESENCE__LEAVE_GRACE_SECS",
                "0",
                "presence.leave_grace_secs",
            ),
            ("CHATDEMO_STORE__KEY_PREFIX", "", "store.key_prefix"),
            (
                "CHATDEMO_SECURITY__ALLOWED_ORIGINS",
                "https://a.example/path",
                "security.allowed_origins",
            ),
        ] {
            let err = Settings::load_from(None, env(&[(key, value)]), &CliOverrides::default())
                .unwrap_err();
            assert!(err.to_string().contains(dotted), "{key}: {err}");
        }
    }

    #[test]
    fn redis_needs_a_shared_cookie_secret_and_a_redis_url() {
        let redis = [("CHATDEMO_STORE__BACKEND", "redis")];
        let err = Settings::load_from(None, env(&redis), &CliOverrides::default()).unwrap_err();
        assert!(err.to_string().contains("security.cookie_secret"), "{err}");
        let secret = "s".repeat(64);
        let with_secret = [
            ("CHATDEMO_STORE__BACKEND", "redis"),
            ("CHATDEMO_SECURITY__COOKIE_SECRET", secret.as_str()),
        ];
        let s = Settings::load_from(None, env(&with_secret), &CliOverrides::default()).unwrap();
        assert_eq!(s.store.backend(), Backend::Redis);
        assert_eq!(s.store.key_prefix, "chatdemo");
        let mut bad_url = with_secret.to_vec();
        bad_url.push(("CHATDEMO_STORE__REDIS_URL", "http://127.0.0.1:6379"));
        let err = Settings::load_from(None, env(&bad_url), &CliOverrides::default()).unwrap_err();
        assert!(err.to_string().contains("store.redis_url"), "{err}");
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
}
