//! `GET /auth/login` (the fake login) and `GET /auth/logout`.

use std::time::Instant;

use actix_web::cookie::Cookie;
use actix_web::http::header;
use actix_web::{web, HttpRequest, HttpResponse};
use serde::{Deserialize, Deserializer};

use super::extract::ClientAddress;
use crate::auth::{CurrentUser, Login, LoginReader};
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

/// Logs in as `?name=` or a random `user-NNNNNN`, sets the user cookie (replacing any the
/// browser had, a planted one included) and a fresh XSRF cookie, and sends the browser to
/// `next` when it is a local path.
pub(super) async fn log_in(
    req: HttpRequest,
    ClientAddress(address): ClientAddress,
    reader: web::Data<LoginReader>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, AppError> {
    let query: LoginQuery = form::decode(req.query_string().as_bytes())?;
    // Logins are free to make, so without this one client could make as many as it
    // likes, each with its own posting budget and socket cap.
    state
        .http
        .login_rate
        .check(&address.to_string(), Instant::now())
        .map_err(AppError::rate_limited)?;
    let login = Login::new(query.name.unwrap_or_else(UserName::random));
    let next = query.next.unwrap_or_else(LocalPath::root);
    tracing::info!(user = %login.name, "logged in");
    let token = state.xsrf.issue(&login.id.as_str());
    Ok(HttpResponse::Found()
        .insert_header((header::LOCATION, next.as_str()))
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .cookie(reader.cookies().cookie(&login))
        .cookie(xsrf::cookie(
            token,
            state.http.cookie_secure,
            state.http.cookie_max_age_days,
        ))
        .finish())
}

/// Ends the login everywhere, not just in this browser: a copy of the cookie is refused
/// from now on, and the login's open sockets close (1008) on every instance.
pub(super) async fn log_out(
    user: Option<CurrentUser>,
    reader: web::Data<LoginReader>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, AppError> {
    if let Some(CurrentUser(login)) = user {
        state.logins.log_out(&login).await?;
        tracing::info!(user = %login.name, "logged out");
    }
    let html = state
        .templates
        .render_logout()
        .map_err(AppError::internal)?;
    let mut expired_xsrf = Cookie::build(xsrf::COOKIE_NAME, "").path("/").finish();
    expired_xsrf.make_removal();
    Ok(HttpResponse::Ok()
        .content_type("text/html; charset=utf-8")
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .cookie(reader.cookies().removal())
        .cookie(expired_xsrf)
        .body(html))
}
