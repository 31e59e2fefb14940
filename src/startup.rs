//! Builds the application once: keys, templates, the hub and the listener, then the
//! actix server whose workers share them. Also the shutdown path used by signals and tests.

use std::net::TcpListener;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Duration;

use actix_web::dev::{Server, ServerHandle};
use actix_web::middleware::{from_fn, DefaultHeaders};
use actix_web::{web, App, HttpServer};
use rand::RngCore;

use crate::assets::{AssetError, Assets, EmbeddedStatic};
use crate::auth::{LoginCookies, LoginReader, Revocations};
use crate::config::Settings;
use crate::connections::{limit_connections, ConnectionLimit};
use crate::forwarded::Provenance;
use crate::hub::HubHandle;
use crate::logins::Logins;
use crate::metrics::Metrics;
use crate::peer::PeerSocket;
use crate::presence::Presence;
use crate::rate::RateLimiter;
use crate::room::{FollowerPause, Room, RoomSize};
use crate::routes::{self, Routes};
use crate::slots::SocketLimits;
use crate::state::{AppState, HttpSettings, SocketSettings};
use crate::store::{self, PresenceSettings, StoreStartError};
use crate::telemetry::trace_requests;
use crate::templates::{TemplateError, Templates};
use crate::xsrf::XsrfKey;

/// How long workers get to finish in-flight requests after a stop. Held polls are answered
/// at once on shutdown, so this only bounds stragglers (actix's default is 30 s).
const SHUTDOWN_TIMEOUT_SECS: u64 = 3;

/// Frames a WebSocket may fall behind before it is disconnected as too slow.
const SOCKET_BACKLOG: usize = 256;

/// WebSockets one login may hold open at once (tabs, devices); more get 429.
const SOCKETS_PER_LOGIN: usize = 64;

#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    #[error("cannot listen on {address}: {source}")]
    Bind {
        address: String,
        source: std::io::Error,
    },
    #[error(transparent)]
    Assets(#[from] AssetError),
    #[error(transparent)]
    Templates(#[from] TemplateError),
    #[error(transparent)]
    Store(#[from] StoreStartError),
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

pub struct Application {
    port: u16,
    server: Server,
    hub: HubHandle,
    shutting_down: Arc<AtomicBool>,
    follower_pause: FollowerPause,
}

/// Stops the application the graceful way: from a signal, or from a test.
#[derive(Clone)]
pub struct ShutdownHandle {
    server: ServerHandle,
    hub: HubHandle,
    shutting_down: Arc<AtomicBool>,
}

impl Application {
    /// Opens the backend, builds the shared state and binds the listener. Must run inside
    /// a Tokio runtime (the room's tasks are spawned on it).
    pub async fn build(settings: Settings) -> Result<Self, StartupError> {
        let max_connections = settings.server.connection_limit(raise_open_file_limit())?;
        let assets = match &settings.server.assets_dir {
            None => Assets::Embedded,
            Some(dir) => Assets::directory(dir)?,
        };
        let templates = Arc::new(Templates::load(&assets)?);
        let secret = cookie_secret(&settings);
        let metrics = Arc::new(Metrics::default());
        let presence_settings = PresenceSettings {
            notices: settings.presence.notices,
            leave_grace: settings.presence.leave_grace(),
            // A poll-only client polls again at once; a few seconds cover the gap.
            poll_window: settings.room.poll_timeout() + Duration::from_secs(5),
        };
        let backend = store::open(&settings, &presence_settings, metrics.clone()).await?;
        let room = Room::start(
            backend.log,
            backend.start,
            RoomSize {
                cache_size: settings.room.cache_size,
                socket_backlog: SOCKET_BACKLOG,
                max_message_chars: settings.room.max_message_chars,
            },
            templates.clone(),
            metrics.clone(),
        );
        let security = &settings.security;
        let provenance = Provenance::new(
            settings.server.trusted_proxies.clone(),
            security.allowed_origins.clone(),
        );
        let revocations = Arc::new(Revocations::default());
        let presence = match backend.presence {
            Some(registry) => {
                Presence::start(presence_settings.poll_window, registry, revocations.clone())
            }
            None => Presence::off(),
        };
        let logins = Logins::start(
            backend.logouts,
            backend.ended,
            revocations.clone(),
            presence.clone(),
            SocketLimits::new(SOCKETS_PER_LOGIN, metrics.clone()),
            security.cookie_max_age_days,
        );
        let shutting_down = Arc::new(AtomicBool::new(false));
        let cookies = LoginCookies::new(
            &secret,
            security.cookie_max_age_days,
            security.cookie_secure,
        );
        let hub = room.hub.clone();
        let follower_pause = room.pause();
        let routes = Arc::new(Routes {
            state: web::Data::new(AppState {
                room,
                presence,
                logins,
                templates,
                xsrf: XsrfKey::derive(&secret),
                metrics: metrics.clone(),
                http: HttpSettings {
                    provenance: provenance.clone(),
                    login_rate: RateLimiter::new(security.login_burst, security.login_per_sec),
                    poll_timeout: settings.room.poll_timeout(),
                    form_limit_bytes: settings.room.form_limit_bytes(),
                    body_timeout: settings.server.body_timeout(),
                    cookie_secure: security.cookie_secure,
                    cookie_max_age_days: security.cookie_max_age_days,
                    metrics_allow: settings.server.metrics_allow.clone(),
                },
                websocket: SocketSettings {
                    ping_interval: settings.websocket.ping_interval(),
                    max_frame_bytes: settings.websocket.max_frame_bytes,
                    backlog: SOCKET_BACKLOG,
                },
                shutting_down: shutting_down.clone(),
            }),
            logins: web::Data::new(LoginReader::new(cookies, revocations)),
            embedded: web::Data::new(EmbeddedStatic::new()),
            assets,
        });
        let connection_limit = web::Data::new(ConnectionLimit::new(
            max_connections,
            settings.server.address_share(max_connections),
            provenance.clone(),
            settings.server.write_timeout(),
            metrics,
        ));

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

        let server = HttpServer::new(move || {
            App::new()
                .app_data(connection_limit.clone())
                .configure(|cfg| routes::configure(cfg, &routes))
                // Every response: never let a browser guess a type (the page-only
                // headers are in `routes::page_headers`).
                .wrap(DefaultHeaders::new().add(("X-Content-Type-Options", "nosniff")))
                .wrap(from_fn(limit_connections))
                // Outermost, so refusals and every header are inside the request's span.
                .wrap(from_fn(trace_requests))
        })
        // Each connection's socket, to notice a client that hangs up on a held poll.
        .on_connect(PeerSocket::on_connect)
        // Every answer and frame leaves at once. actix-web leaves Nagle's algorithm on, and
        // a small write behind an unacknowledged one then waits for the client's delayed
        // ACK (40 ms on Linux): that was the 40 ms tail of every fan-out (issue 19).
        .tcp_nodelay(true)
        .workers(workers)
        .shutdown_timeout(SHUTDOWN_TIMEOUT_SECS)
        // Signals are ours (see `ShutdownHandle`), so held polls are answered before the stop.
        .disable_signals()
        .listen(listener)?
        .run();

        tracing::info!(%address, port, workers, max_connections, "chat room listening");
        Ok(Self {
            port,
            server,
            hub,
            shutting_down,
            follower_pause,
        })
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// The switch that holds this instance's follower of the log still (tests use it to
    /// make an instance fall behind).
    pub fn follower_pause(&self) -> FollowerPause {
        self.follower_pause.clone()
    }

    pub fn shutdown_handle(&self) -> ShutdownHandle {
        ShutdownHandle {
            server: self.server.handle(),
            hub: self.hub.clone(),
            shutting_down: self.shutting_down.clone(),
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
        self.shutting_down.store(true, Relaxed);
        // `stop` takes effect at once; awaiting it waits for the workers to finish.
        let stopped = self.server.stop(true);
        self.hub.shutdown().await;
        stopped.await;
    }
}

/// Waits for Ctrl-C or SIGTERM, then shuts down.
pub async fn shutdown_on_signal(handle: ShutdownHandle) {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut term) => tokio::select! {
                _ = ctrl_c => {},
                _ = term.recv() => {},
            },
            Err(error) => {
                tracing::warn!(%error, "cannot listen for SIGTERM; only Ctrl-C stops the server");
                let _ = ctrl_c.await;
            }
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
    handle.shutdown().await;
}

/// Every held poll and socket is an open file: raise the soft limit to the hard one.
/// Returns the limit in force, if it can be read.
fn raise_open_file_limit() -> Option<u64> {
    match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(limit) => {
            tracing::debug!(limit, "open-file limit");
            Some(limit)
        }
        Err(error) => {
            tracing::warn!(%error, "cannot raise the open-file limit");
            None
        }
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
