//! `GET /auth/login` (the fake login) and `GET /auth/logout`.

use actix_session::Session;
use actix_web::cookie::Cookie;
use actix_web::http::header;
use actix_web::{web, HttpRequest, HttpResponse};

use crate::auth::Login;
use crate::domain::{is_local_path, UserName};
use crate::error::AppError;
use crate::form::FormFields;
use crate::startup::AppState;
use crate::xsrf;

/// Logs in as `?name=` or a random `user-NNNNNN`, sets the user cookie and a fresh XSRF
/// cookie, and sends the browser to `next` when it is a local path.
pub async fn log_in(
    req: HttpRequest,
    session: Session,
    state: web::Data<AppState>,
) -> Result<HttpResponse, AppError> {
    let query = FormFields::parse(req.query_string().as_bytes())?;
    let name = match query.get("name") {
        Some(raw) => UserName::parse(raw)?,
        None => UserName::random(),
    };
    let next = query
        .get("next")
        .filter(|n| is_local_path(n))
        .unwrap_or("/");
    let login = Login::new(name);
    login.save(&session)?;
    tracing::info!(user = %login.name, "logged in");
    let security = &state.settings.security;
    let token = state.xsrf.issue(&login.id);
    Ok(HttpResponse::Found()
        .insert_header((header::LOCATION, next))
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .cookie(xsrf::cookie(
            token,
            security.cookie_secure,
            security.cookie_max_age_days,
        ))
        .finish())
}

pub async fn log_out(
    session: Session,
    state: web::Data<AppState>,
) -> Result<HttpResponse, AppError> {
    session.purge();
    let html = state
        .templates
        .render_logout()
        .map_err(AppError::internal)?;
    let mut expired_xsrf = Cookie::build(xsrf::COOKIE_NAME, "").path("/").finish();
    expired_xsrf.make_removal();
    Ok(HttpResponse::Ok()
        .content_type("text/html; charset=utf-8")
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .cookie(expired_xsrf)
        .body(html))
}
