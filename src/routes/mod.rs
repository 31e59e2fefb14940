//! The route table, used by the server and the tests alike.

mod auth;
mod health;
mod message;
mod page;
mod socket;

use std::path::Path;

use actix_files::Files;
use actix_session::storage::CookieSessionStore;
use actix_session::SessionMiddleware;
use actix_web::middleware::DefaultHeaders;
use actix_web::{web, HttpRequest};

use crate::auth::Login;
use crate::error::AppError;
use crate::form::FormFields;
use crate::startup::AppState;

pub fn configure(
    cfg: &mut web::ServiceConfig,
    state: web::Data<AppState>,
    sessions: SessionMiddleware<CookieSessionStore>,
    static_dir: &Path,
) {
    let form_limit = state.settings.room.form_limit_bytes();
    cfg.app_data(state)
        // Bodies over this are refused with 413 before they are read in full.
        .app_data(web::PayloadConfig::new(form_limit))
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
        .route("/healthz", web::get().to(health::healthz))
        .route("/metrics", web::get().to(health::metrics))
        .service(
            web::scope("/static")
                // The page links static files with `?v=<content hash>`, so a day is safe.
                .wrap(DefaultHeaders::new().add(("Cache-Control", "public, max-age=86400")))
                .service(
                    Files::new("", static_dir)
                        .use_etag(true)
                        .use_last_modified(true),
                ),
        );
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

/// What every POST does first: read the urlencoded form and check its XSRF token against
/// this login.
fn checked_form(
    req: &HttpRequest,
    body: &[u8],
    state: &AppState,
    login: &Login,
) -> Result<FormFields, AppError> {
    let form = read_form(req, body)?;
    state.xsrf.check_request(req, &form, &login.id)?;
    Ok(form)
}

/// Reads a POST body as a urlencoded form; other content types are refused.
fn read_form(req: &HttpRequest, body: &[u8]) -> Result<FormFields, AppError> {
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
    Ok(FormFields::parse(body)?)
}
