//! `GET /auth/login` (the fake login) and `GET /auth/logout`.

use actix_session::Session;
use actix_web::cookie::Cookie;
use actix_web::http::header;
use actix_web::{web, HttpRequest, HttpResponse};
use serde::{Deserialize, Deserializer};

use crate::auth::Login;
use crate::domain::{LocalPath, UserName};
use crate::error::AppError;
use crate::form;
use crate::state::AppState;
use crate::xsrf;

/// The query of `GET /auth/login`.
#[derive(Deserialize)]
struct LoginQuery {
    /// A chosen name; an invalid one (empty included) is a 400.
    name: Option<UserName>,
    #[serde(default, deserialize_with = "local_or_none")]
    next: Option<LocalPath>,
}

/// An off-site or malformed `next` is ignored: the login still works and goes home.
fn local_or_none<'de, D: Deserializer<'de>>(d: D) -> Result<Option<LocalPath>, D::Error> {
    Ok(Option::<String>::deserialize(d)?.and_then(|raw| LocalPath::parse(&raw).ok()))
}

/// Logs in as `?name=` or a random `user-NNNNNN`, sets the user cookie and a fresh XSRF
/// cookie, and sends the browser to `next` when it is a local path.
pub(super) async fn log_in(
    req: HttpRequest,
    session: Session,
    state: web::Data<AppState>,
) -> Result<HttpResponse, AppError> {
    let query: LoginQuery = form::decode(req.query_string().as_bytes())?;
    let login = Login::new(query.name.unwrap_or_else(UserName::random));
    let next = query.next.unwrap_or_else(LocalPath::root);
    login.save(&session)?;
    tracing::info!(user = %login.name, "logged in");
    let security = &state.security;
    let token = state.xsrf.issue(login.id.as_str());
    Ok(HttpResponse::Found()
        .insert_header((header::LOCATION, next.as_str()))
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .cookie(xsrf::cookie(
            token,
            security.cookie_secure,
            security.cookie_max_age_days,
        ))
        .finish())
}

pub(super) async fn log_out(
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
