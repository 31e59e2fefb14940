//! What the route handlers share, built once by `startup` for all workers. It sits below
//! the routes and above the pieces it holds: nothing it holds imports it back, and each
//! piece (the login reader, the poster, the socket context, the connection limit) is handed
//! only what it needs.

use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Duration;

use crate::auth::Revocations;
use crate::config::SecuritySettings;
use crate::forwarded::TrustedProxies;
use crate::hub::HubHandle;
use crate::metrics::Metrics;
use crate::posting::Poster;
use crate::presence::Presence;
use crate::rate::RateLimiter;
use crate::socket::SocketContext;
use crate::store::Store;
use crate::templates::Templates;
use crate::xsrf::XsrfKey;

pub struct AppState {
    pub hub: HubHandle,
    /// Posts go through `poster`; logouts are recorded here directly.
    pub store: Arc<Store>,
    pub revocations: Arc<Revocations>,
    pub templates: Arc<Templates>,
    pub xsrf: XsrfKey,
    pub poster: Poster,
    pub presence: Presence,
    pub sockets: Arc<SocketContext>,
    pub metrics: Arc<Metrics>,
    pub security: SecuritySettings,
    pub proxies: TrustedProxies,
    /// New logins per client address (this instance's count).
    pub login_rate: RateLimiter,
    /// How long a long poll is held before an empty answer.
    pub poll_timeout: Duration,
    /// Largest POST body; past it, 413.
    pub form_limit_bytes: usize,
    /// How long a POST body may take to arrive in full; past it, 408.
    pub body_timeout: Duration,
    /// Set when shutdown starts: `/healthz` answers 503 from then on.
    pub shutting_down: Arc<AtomicBool>,
}
