//! Builds the application once: keys, templates, the hub and the listener, then the
//! actix server whose workers share them. Also the shutdown path used by signals and tests.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::Arc;

use actix_session::config::{CookieContentSecurity, PersistentSession};
use actix_session::storage::CookieSessionStore;
use actix_session::SessionMiddleware;
use actix_web::body::MessageBody;
use actix_web::cookie::{time::Duration as CookieDuration, Key, SameSite};
use actix_web::dev::{Server, ServerHandle, ServiceRequest, ServiceResponse};
use actix_web::middleware::{from_fn, DefaultHeaders, Next};
use actix_web::{web, App, HttpResponse, HttpServer};
use rand::RngCore;

use crate::auth::{LoginReader, USER_COOKIE};
use crate::config::Settings;
use crate::hub::{HubConfig, HubHandle};
use crate::metrics::Metrics;
use crate::rate::RateLimiter;
use crate::routes;
use crate::socket::SocketLimits;
use crate::templates::{TemplateError, Templates};
use crate::xsrf::XsrfKey;

/// How long workers get to finish in-flight requests after a stop. Held polls are answered
/// at once on shutdown, so this only bounds stragglers (actix's default is 30 s).
const SHUTDOWN_TIMEOUT_SECS: u64 = 3;

/// Frames a WebSocket may fall behind before it is disconnected as too slow.
const SOCKET_BACKLOG: usize = 256;

/// WebSockets one login may hold open at once (tabs, devices); more get 429.
const SOCKETS_PER_LOGIN: usize = 64;

/// Everything the handlers share, built once for all workers.
pub struct AppState {
    pub settings: Settings,
    pub hub: HubHandle,
    pub templates: Templates,
    pub xsrf: XsrfKey,
    pub logins: LoginReader,
    pub rate: RateLimiter,
    pub metrics: Arc<Metrics>,
    pub socket_limits: SocketLimits,
    /// Frames a socket may fall behind the room before it is dropped as too slow.
    pub socket_backlog: usize,
    /// Set when shutdown starts: `/healthz` answers 503 from then on.
    pub shutting_down: AtomicBool,
    /// Requests being served now (held polls included; upgraded sockets count separately).
    pub in_flight: AtomicU64,
}

#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    #[error("cannot listen on {address}: {source}")]
    Bind {
        address: String,
        source: std::io::Error,
    },
    #[error(transparent)]
    Templates(#[from] TemplateError),
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

pub struct Application {
    port: u16,
    server: Server,
    state: web::Data<AppState>,
}

/// Stops the application the graceful way: from a signal, or from a test.
#[derive(Clone)]
pub struct ShutdownHandle {
    server: ServerHandle,
    state: web::Data<AppState>,
}

impl Application {
    /// Binds the listener and builds the shared state. Must run inside a Tokio runtime (the
    /// hub task is spawned on it).
    pub async fn build(settings: Settings) -> Result<Self, StartupError> {
        raise_open_file_limit();
        let secret = cookie_secret(&settings);
        let metrics = Arc::new(Metrics::default());
        let hub = HubHandle::start(
            HubConfig {
                cache_size: settings.room.cache_size,
                socket_backlog: SOCKET_BACKLOG,
            },
            metrics.clone(),
        );
        let templates = Templates::load(&asset_dir("templates"), &asset_dir("static"))?;
        let session_key = Key::derive_from(&secret);
        let state = web::Data::new(AppState {
            xsrf: XsrfKey::derive(&secret),
            logins: LoginReader::new(session_key.clone()),
            rate: RateLimiter::new(settings.room.rate_burst, settings.room.rate_per_sec),
            hub,
            templates,
            metrics,
            socket_limits: SocketLimits::new(SOCKETS_PER_LOGIN),
            socket_backlog: SOCKET_BACKLOG,
            shutting_down: AtomicBool::new(false),
            in_flight: AtomicU64::new(0),
            settings,
        });

        let settings = &state.settings;
        let address = format!("{}:{}", settings.server.address, settings.server.port);
        let listener = TcpListener::bind(&address).map_err(|source| StartupError::Bind {
            address: address.clone(),
            source,
        })?;
        let port = listener.local_addr()?.port();
        let workers = match settings.server.workers {
            0 => std::thread::available_parallelism().map_or(2, |n| n.get()),
            n => n,
        };

        let server_state = state.clone();
        let static_dir = asset_dir("static");
        let server = HttpServer::new(move || {
            let state = server_state.clone();
            App::new()
                .configure(|cfg| {
                    let sessions = session_middleware(&state.settings, session_key.clone());
                    routes::configure(cfg, state.clone(), sessions, &static_dir)
                })
                // Every response: never let a browser guess a type (the page-only
                // headers are in `routes::page_headers`).
                .wrap(DefaultHeaders::new().add(("X-Content-Type-Options", "nosniff")))
                .wrap(from_fn(limit_connections))
        })
        .workers(workers)
        .shutdown_timeout(SHUTDOWN_TIMEOUT_SECS)
        // Signals are ours (see `ShutdownHandle`), so held polls are answered before the stop.
        .disable_signals()
        .listen(listener)?
        .run();

        tracing::info!(%address, port, workers, "chat room listening");
        Ok(Self {
            port,
            server,
            state,
        })
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn shutdown_handle(&self) -> ShutdownHandle {
        ShutdownHandle {
            server: self.server.handle(),
            state: self.state.clone(),
        }
    }

    pub async fn run_until_stopped(self) -> std::io::Result<()> {
        self.server.await
    }
}

impl ShutdownHandle {
    /// Stops accepting, answers every held poll with no messages, closes every socket, and
    /// waits for the server to stop.
    pub async fn shutdown(&self) {
        tracing::info!("shutting down");
        self.state.shutting_down.store(true, Relaxed);
        // `stop` takes effect at once; awaiting it waits for the workers to finish.
        let stopped = self.server.stop(true);
        self.state.hub.shutdown().await;
        stopped.await;
    }
}

/// Waits for Ctrl-C or SIGTERM, then shuts down.
pub async fn shutdown_on_signal(handle: ShutdownHandle) {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .expect("installing a SIGTERM handler succeeds on unix");
        tokio::select! {
            _ = ctrl_c => {},
            _ = term.recv() => {},
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
    handle.shutdown().await;
}

/// Where `templates/` and `static/` are: the working directory when it has them (a
/// deployment), else the source tree this binary was built from (`cargo run`, tests).
pub fn asset_dir(name: &str) -> PathBuf {
    let local = Path::new(name);
    if local.is_dir() {
        local.to_path_buf()
    } else {
        Path::new(env!("CARGO_MANIFEST_DIR")).join(name)
    }
}

/// Every held poll and socket is an open file: raise the soft limit to the hard one.
fn raise_open_file_limit() {
    match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(limit) => tracing::debug!(limit, "open-file limit"),
        Err(error) => tracing::warn!(%error, "cannot raise the open-file limit"),
    }
}

fn cookie_secret(settings: &Settings) -> Vec<u8> {
    let configured = settings.security.cookie_secret.expose();
    if configured.is_empty() {
        tracing::warn!(
            "security.cookie_secret is empty: using a random key for this run; \
             logins will not survive a restart"
        );
        let mut secret = vec![0u8; 64];
        rand::rng().fill_bytes(&mut secret);
        secret
    } else {
        configured.as_bytes().to_vec()
    }
}

/// Writes the `user` cookie; only the login and logout routes need it (see `auth`).
fn session_middleware(settings: &Settings, key: Key) -> SessionMiddleware<CookieSessionStore> {
    let max_age = CookieDuration::days(settings.security.cookie_max_age_days.into());
    SessionMiddleware::builder(CookieSessionStore::default(), key)
        .cookie_name(USER_COOKIE.to_owned())
        .cookie_secure(settings.security.cookie_secure)
        .cookie_http_only(true)
        .cookie_same_site(SameSite::Lax)
        .cookie_path("/".to_owned())
        // Encrypted as well as signed: the client can neither read nor alter its login,
        // and the cookie name is bound in, so it cannot be replayed under another name.
        .cookie_content_security(CookieContentSecurity::Private)
        .session_lifecycle(PersistentSession::default().session_ttl(max_age))
        .build()
}

/// Counts a request against `server.max_connections` while it is being served.
struct ConnectionGuard(web::Data<AppState>);

impl ConnectionGuard {
    fn enter(state: &web::Data<AppState>) -> Option<Self> {
        let open = state.in_flight.fetch_add(1, Relaxed) + state.metrics.sockets.load(Relaxed);
        let guard = Self(state.clone());
        if open >= state.settings.server.max_connections as u64 {
            state.metrics.refused_connections.fetch_add(1, Relaxed);
            None // `guard` drops here and gives the slot back.
        } else {
            Some(guard)
        }
    }
}

impl Drop for ConnectionGuard {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Relaxed);
    }
}

/// Middleware: refuses a request with 503 when `server.max_connections` requests and
/// sockets are already being served, so a flood degrades into quick refusals instead of
/// exhausting file descriptors and memory.
async fn limit_connections(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let guard = req
        .app_data::<web::Data<AppState>>()
        .and_then(ConnectionGuard::enter);
    match guard {
        Some(_guard) => Ok(next.call(req).await?.map_into_left_body()),
        None => {
            let refused = HttpResponse::ServiceUnavailable()
                .insert_header(("Retry-After", "5"))
                .content_type("text/plain; charset=utf-8")
                .body("too many connections; try again shortly");
            Ok(req.into_response(refused).map_into_right_body())
        }
    }
}
