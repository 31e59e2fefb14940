//! The route table, used by the server and the tests alike.

mod auth;
mod health;
mod message;
mod page;
mod presence;
mod socket;

use actix_files::Files;
use actix_session::storage::CookieSessionStore;
use actix_session::SessionMiddleware;
use actix_web::middleware::DefaultHeaders;
use actix_web::{web, HttpRequest};
use serde::de::DeserializeOwned;

use crate::assets::{self, Assets, EmbeddedStatic};
use crate::auth::{Login, LoginReader};
use crate::error::AppError;
use crate::form;
use crate::state::AppState;

/// What the routes are built from; made once, shared by every worker.
pub struct Routes {
    pub state: web::Data<AppState>,
    pub logins: web::Data<LoginReader>,
    pub embedded: web::Data<EmbeddedStatic>,
    pub assets: Assets,
}

pub fn configure(
    cfg: &mut web::ServiceConfig,
    routes: &Routes,
    sessions: SessionMiddleware<CookieSessionStore>,
) {
    cfg.app_data(routes.state.clone())
        .app_data(routes.logins.clone())
        .service(
            web::resource("/")
                .wrap(page_headers())
                .route(web::get().to(page::show_chat)),
        )
        .service(
            web::scope("/auth")
                .wrap(sessions)
                .wrap(page_headers())
                .route("/login", web::get().to(auth::log_in))
                .route("/logout", web::get().to(auth::log_out)),
        )
        .route("/a/message/new", web::post().to(message::post_message))
        .route("/a/message/updates", web::post().to(message::poll_updates))
        .route("/a/message/socket", web::get().to(socket::open_socket))
        .route("/a/presence", web::get().to(presence::show_presence))
        .route("/healthz", web::get().to(health::healthz))
        .route("/metrics", web::get().to(health::metrics));
    // The page links static files with `?v=<content hash>`, so a day is safe.
    let cached = DefaultHeaders::new().add(("Cache-Control", "public, max-age=86400"));
    match &routes.assets {
        Assets::Embedded => cfg.service(
            web::resource("/static/{name}")
                .app_data(routes.embedded.clone())
                .wrap(cached)
                .route(web::get().to(assets::serve_embedded))
                .route(web::head().to(assets::serve_embedded)),
        ),
        Assets::Directory(dir) => cfg.service(
            web::scope("/static").wrap(cached).service(
                Files::new("", dir.join("static"))
                    .use_etag(true)
                    .use_last_modified(true),
            ),
        ),
    };
}

/// Headers for HTML pages: scripts and connections from this origin only, no framing.
/// JSON answers and frames are not documents, so the hot paths do not carry them.
fn page_headers() -> DefaultHeaders {
    DefaultHeaders::new()
        .add((
            "Content-Security-Policy",
            "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self'; \
             connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; \
             frame-ancestors 'none'",
        ))
        .add(("X-Frame-Options", "DENY"))
        .add(("Referrer-Policy", "same-origin"))
}

/// What every POST does first: refuse a request another site sent, read the urlencoded
/// form, check its XSRF token against this login, then decode the rest into the route's
/// form type.
fn checked_form<T: DeserializeOwned>(
    req: &HttpRequest,
    body: &[u8],
    state: &AppState,
    login: &Login,
) -> Result<T, AppError> {
    require_same_origin(req, state)?;
    require_form_content_type(req)?;
    let posted = form::decode_posted::<T>(body)?;
    state
        .xsrf
        .check_request(req, posted.xsrf.as_deref(), login.id.as_str())?;
    Ok(posted.form?)
}

/// A page on the same host but another port can read the `_xsrf` cookie (cookies do not
/// separate ports), so the token alone does not prove the request came from our page. A
/// browser says where it did: an `Origin` that is neither ours nor allowlisted, or a
/// `Sec-Fetch-Site` of `cross-site` or `same-site`, is refused. Without either header
/// (scripts, old clients) the token decides.
fn require_same_origin(req: &HttpRequest, state: &AppState) -> Result<(), AppError> {
    let header = |name| req.headers().get(name).and_then(|v| v.to_str().ok());
    if matches!(header("sec-fetch-site"), Some("cross-site" | "same-site")) {
        return Err(AppError::Forbidden("cross-site POSTs are not allowed"));
    }
    if let Some(origin) = header("origin") {
        let allowed = origin.eq_ignore_ascii_case(&state.proxies.origin(req))
            || state
                .security
                .allowed_origins
                .iter()
                .any(|a| a.as_str().eq_ignore_ascii_case(origin));
        if !allowed {
            return Err(AppError::Forbidden("cross-origin POSTs are not allowed"));
        }
    }
    Ok(())
}

/// Reads a POST body: 413 past the form limit (at once when `Content-Length` says so), 408
/// with the connection closed when it has not arrived in full within the body timeout,
/// so a client that sends nothing (or a byte a second) cannot hold a connection forever.
async fn read_body(
    req: &HttpRequest,
    payload: web::Payload,
    state: &AppState,
) -> Result<web::Bytes, AppError> {
    let limit = state.form_limit_bytes;
    let declared = req
        .headers()
        .get(actix_web::http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    if declared.is_some_and(|length| length > limit) {
        return Err(AppError::PayloadTooLarge);
    }
    match tokio::time::timeout(state.body_timeout, collect(payload, declared, limit)).await {
        Err(_) => Err(AppError::BodyTimeout),
        Ok(body) => body,
    }
}

/// The body's bytes, in a buffer the size the client declared. (actix-web's
/// `to_bytes_limited` starts every body of unknown size at 32 KiB, and a held poll kept
/// that for its whole hold: most of a held poll's memory, for a form of a hundred bytes.)
async fn collect(
    mut payload: web::Payload,
    declared: Option<usize>,
    limit: usize,
) -> Result<web::Bytes, AppError> {
    use futures_core::Stream;
    let mut body = web::BytesMut::with_capacity(declared.unwrap_or(256).min(limit));
    while let Some(chunk) =
        std::future::poll_fn(|cx| std::pin::Pin::new(&mut payload).poll_next(cx)).await
    {
        let chunk = chunk.map_err(|error| AppError::BadRequest(error.to_string()))?;
        if body.len() + chunk.len() > limit {
            return Err(AppError::PayloadTooLarge);
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body.freeze())
}

/// A POST body must be `application/x-www-form-urlencoded` (or have no content type).
fn require_form_content_type(req: &HttpRequest) -> Result<(), AppError> {
    if let Some(content_type) = req.headers().get(actix_web::http::header::CONTENT_TYPE) {
        let essence = content_type
            .to_str()
            .unwrap_or("")
            .split(';')
            .next()
            .unwrap_or("")
            .trim();
        if !essence.eq_ignore_ascii_case("application/x-www-form-urlencoded") {
            return Err(AppError::UnsupportedMediaType);
        }
    }
    Ok(())
}
