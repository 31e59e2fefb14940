//! `GET /a/presence`: who is online.

use actix_web::http::header;
use actix_web::{web, HttpResponse};

use crate::auth::CurrentUser;
use crate::error::AppError;
use crate::state::AppState;

/// `{"count": N, "users": [{"name", "since"}, ...]}`, oldest first: names only.
pub(super) async fn show_presence(
    _user: CurrentUser,
    state: web::Data<AppState>,
) -> Result<HttpResponse, AppError> {
    let who = state.presence.who().await.ok_or(AppError::NotFound)?;
    Ok(HttpResponse::Ok()
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .json(who))
}
