//! Builds the application once: keys, templates, the hub and the listener, then the
//! actix server whose workers share them. Also the shutdown path used by signals and tests.

use std::net::TcpListener;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Duration;

use actix_session::config::{CookieContentSecurity, PersistentSession};
use actix_session::storage::CookieSessionStore;
use actix_session::SessionMiddleware;
use actix_web::cookie::{time::Duration as CookieDuration, Key, SameSite};
use actix_web::dev::{Server, ServerHandle};
use actix_web::middleware::{from_fn, DefaultHeaders};
use actix_web::{web, App, HttpServer};
use rand::RngCore;
use tokio::sync::broadcast::error::RecvError;

use crate::assets::{AssetError, Assets, EmbeddedStatic};
use crate::auth::{unix_now, LoginReader, Revocations, USER_COOKIE};
use crate::config::{Backend, Settings};
use crate::connections::{limit_connections, ConnectionLimit};
use crate::forwarded::TrustedProxies;
use crate::hub::{HubConfig, HubHandle, LogStart};
use crate::metrics::Metrics;
use crate::peer::PeerSocket;
use crate::posting::Poster;
use crate::presence::{Presence, PresenceSettings, Registry};
use crate::rate::RateLimiter;
use crate::routes::{self, Routes};
use crate::socket::{SocketContext, SocketLimits};
use crate::state::AppState;
use crate::store::{ReaderPause, RedisSettings, RedisStore, Store, StoreStartError};
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
    #[error("cannot load the ended logins from Redis: {0}")]
    Revocations(redis::RedisError),
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

pub struct Application {
    port: u16,
    server: Server,
    hub: HubHandle,
    shutting_down: Arc<AtomicBool>,
    reader_pause: Option<ReaderPause>,
}

/// Stops the application the graceful way: from a signal, or from a test.
#[derive(Clone)]
pub struct ShutdownHandle {
    server: ServerHandle,
    hub: HubHandle,
    shutting_down: Arc<AtomicBool>,
}

impl Application {
    /// Binds the listener and builds the shared state. Must run inside a Tokio runtime (the
    /// hub task is spawned on it).
    pub async fn build(settings: Settings) -> Result<Self, StartupError> {
        let max_connections = settings.server.connection_limit(raise_open_file_limit())?;
        let assets = match &settings.server.assets_dir {
            None => Assets::Embedded,
            Some(dir) => Assets::directory(dir)?,
        };
        let templates = Arc::new(Templates::load(&assets)?);
        let secret = cookie_secret(&settings);
        let session_key = Key::derive_from(&secret);
        let xsrf = XsrfKey::derive(&secret);
        let metrics = Arc::new(Metrics::default());
        let (hub, store) = start_room(&settings, templates.clone(), metrics.clone()).await?;
        let reader_pause = store.reader_pause();
        let presence = start_presence(&settings, &hub, &store);
        let revocations = start_revocations(&store).await?;
        let store = Arc::new(store);
        let poster = Poster::new(store.clone(), settings.room.max_message_chars);
        let sockets = Arc::new(SocketContext {
            poster: poster.clone(),
            presence: presence.clone(),
            xsrf: xsrf.clone(),
            limits: SocketLimits::new(SOCKETS_PER_LOGIN, metrics.clone()),
            metrics: metrics.clone(),
            ping_interval: settings.websocket.ping_interval(),
            max_frame_bytes: settings.websocket.max_frame_bytes,
            backlog: SOCKET_BACKLOG,
        });
        close_sockets_of_ended_logins(&revocations, sockets.limits.clone());
        let shutting_down = Arc::new(AtomicBool::new(false));
        let routes = Arc::new(Routes {
            state: web::Data::new(AppState {
                hub: hub.clone(),
                store,
                revocations: revocations.clone(),
                templates,
                xsrf,
                poster,
                presence,
                sockets,
                metrics: metrics.clone(),
                security: settings.security.clone(),
                proxies: TrustedProxies::new(settings.server.trusted_proxies.clone()),
                login_rate: RateLimiter::new(
                    settings.security.login_burst,
                    settings.security.login_per_sec,
                ),
                poll_timeout: settings.room.poll_timeout(),
                form_limit_bytes: settings.room.form_limit_bytes(),
                body_timeout: Duration::from_secs(settings.server.body_timeout_secs),
                shutting_down: shutting_down.clone(),
            }),
            logins: web::Data::new(LoginReader::new(
                session_key.clone(),
                settings.security.cookie_max_age_days,
                revocations,
            )),
            embedded: web::Data::new(EmbeddedStatic::new()),
            assets,
        });
        let connection_limit = web::Data::new(ConnectionLimit::new(max_connections, metrics));

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
            let sessions = session_middleware(&settings, session_key.clone());
            App::new()
                .app_data(connection_limit.clone())
                .configure(|cfg| routes::configure(cfg, &routes, sessions))
                // Every response: never let a browser guess a type (the page-only
                // headers are in `routes::page_headers`).
                .wrap(DefaultHeaders::new().add(("X-Content-Type-Options", "nosniff")))
                .wrap(from_fn(limit_connections))
                // Outermost, so refusals and every header are inside the request's span.
                .wrap(from_fn(trace_requests))
        })
        // Each connection's socket, to notice a client that hangs up on a held poll.
        .on_connect(PeerSocket::on_connect)
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
            reader_pause,
        })
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// The Redis reader's pause switch (`None` for the in-memory room).
    pub fn reader_pause(&self) -> Option<ReaderPause> {
        self.reader_pause.clone()
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

/// The hub and the store behind it: the hub alone for the in-memory room; for Redis, the
/// hub starts from the log in Redis and a reader keeps feeding it.
async fn start_room(
    settings: &Settings,
    templates: Arc<Templates>,
    metrics: Arc<Metrics>,
) -> Result<(HubHandle, Store), StartupError> {
    let hub_config = |log| HubConfig {
        cache_size: settings.room.cache_size,
        socket_backlog: SOCKET_BACKLOG,
        log,
        templates: templates.clone(),
    };
    match settings.store.backend {
        Backend::Memory => {
            metrics.store_up.store(1, Relaxed);
            let hub = HubHandle::start(hub_config(LogStart::new_epoch()), metrics);
            let room = &settings.room;
            let rate = RateLimiter::new(room.rate_burst, room.rate_per_sec);
            let address_rate = RateLimiter::new(room.address_burst, room.address_per_sec);
            Ok((
                hub.clone(),
                Store::Memory {
                    hub,
                    rate,
                    address_rate,
                },
            ))
        }
        Backend::Redis => {
            let redis = RedisSettings {
                url: settings.store.redis_url.clone(),
                key_prefix: settings.store.key_prefix.clone(),
                cache_size: settings.room.cache_size,
                rate_burst: settings.room.rate_burst,
                rate_per_sec: settings.room.rate_per_sec,
                address_burst: settings.room.address_burst,
                address_per_sec: settings.room.address_per_sec,
            };
            let (opened, log) = RedisStore::open(redis, templates.clone(), metrics.clone()).await?;
            let hub = HubHandle::start(hub_config(log), metrics);
            Ok((hub.clone(), Store::Redis(opened.follow(hub))))
        }
    }
}

/// Presence on the same store as the room: in this process, or in Redis for every instance.
/// The ended logins: with Redis, loaded before the server answers anyone (so a restart
/// does not bring a logged-out cookie back) and followed from then on.
async fn start_revocations(store: &Store) -> Result<Arc<Revocations>, StartupError> {
    let revocations = Arc::new(Revocations::default());
    if let Store::Redis(redis) = store {
        let redis = redis.revocations();
        let (ended, after) = redis.load().await.map_err(StartupError::Revocations)?;
        tracing::info!(logins = ended.len(), "ended logins loaded from Redis");
        revocations.apply(ended);
        let target = Arc::downgrade(&revocations);
        redis.follow(after, move |ended| {
            let Some(target) = target.upgrade() else {
                return false;
            };
            target.apply(ended);
            true
        });
    }
    Ok(revocations)
}

/// Closes (1008) the sockets of every login as it is ended, here or on another instance.
fn close_sockets_of_ended_logins(revocations: &Arc<Revocations>, limits: SocketLimits) {
    let mut ended = revocations.subscribe();
    // Weak, so the task ends (its channel closes) when the server is dropped.
    let revocations = Arc::downgrade(revocations);
    tokio::spawn(async move {
        loop {
            match ended.recv().await {
                Ok(id) => limits.end_logins(|open| *open == id),
                Err(RecvError::Lagged(_)) => {
                    let Some(revocations) = revocations.upgrade() else {
                        return;
                    };
                    let now = unix_now();
                    limits.end_logins(|open| revocations.is_revoked(open, now));
                }
                Err(RecvError::Closed) => return,
            }
        }
    });
}

fn start_presence(settings: &Settings, hub: &HubHandle, store: &Store) -> Presence {
    if !settings.presence.enabled {
        return Presence::off();
    }
    let presence = PresenceSettings {
        notices: settings.presence.notices,
        leave_grace: Duration::from_secs(settings.presence.leave_grace_secs),
        // A poll-only client polls again at once; a few seconds cover the gap.
        poll_window: settings.room.poll_timeout() + Duration::from_secs(5),
    };
    let registry = match store {
        Store::Memory { .. } => Registry::memory(hub.clone()),
        Store::Redis(redis) => Registry::redis(redis.presence()),
    };
    Presence::start(presence, registry)
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
