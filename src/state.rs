//! What the route handlers and the socket tasks share, built once by `startup` for all
//! workers. Each piece is here once and reached one way: the room (posting, polls,
//! sockets' feed, pages), presence, this instance's logins (socket slots, logout), and the
//! settings the routes read. Nothing it holds imports it back.

use std::net::IpAddr;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Duration;

use crate::forwarded::Provenance;
use crate::logins::Logins;
use crate::metrics::Metrics;
use crate::presence::Presence;
use crate::rate::RateLimiter;
use crate::room::Room;
use crate::templates::Templates;
use crate::xsrf::XsrfKey;

pub struct AppState {
    pub room: Room,
    pub presence: Presence,
    pub logins: Arc<Logins>,
    pub templates: Arc<Templates>,
    pub xsrf: XsrfKey,
    pub metrics: Arc<Metrics>,
    pub http: HttpSettings,
    pub websocket: SocketSettings,
    /// Set when shutdown starts: `/healthz` answers 503 from then on.
    pub shutting_down: Arc<AtomicBool>,
}

/// What the HTTP routes are told by the configuration.
pub struct HttpSettings {
    /// Client addresses and the origin policy.
    pub provenance: Provenance,
    /// New logins per client address (this instance's count).
    pub login_rate: RateLimiter,
    /// How long a long poll is held before an empty answer.
    pub poll_timeout: Duration,
    /// Largest POST body; past it, 413.
    pub form_limit_bytes: usize,
    /// How long a POST body may take to arrive in full; past it, 408.
    pub body_timeout: Duration,
    /// Whether cookies are marked `Secure`.
    pub cookie_secure: bool,
    /// How long a login (and its cookies) lasts.
    pub cookie_max_age_days: u32,
    /// Client addresses that may read `/metrics`.
    pub metrics_allow: Vec<IpAddr>,
}

/// What every WebSocket is told by the configuration.
pub struct SocketSettings {
    pub ping_interval: Duration,
    /// Largest message a client may send, fragments included.
    pub max_frame_bytes: usize,
    /// Frames a socket may fall behind the room before it is dropped as too slow.
    pub backlog: usize,
}
