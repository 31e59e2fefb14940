//! `GET /a/presence`: who is online.

use actix_web::http::header;
use actix_web::{web, HttpRequest, HttpResponse};
use serde::Deserialize;

use crate::auth::CurrentUser;
use crate::error::AppError;
use crate::form;
use crate::presence::Rows;
use crate::state::AppState;

#[derive(Deserialize)]
struct PresenceQuery {
    limit: Option<Rows>,
}

/// `{"count": N, "users": [{"name", "since"}, ...]}`: how many are online, and the first
/// `?limit=` (100 unless said, at most 1,000), oldest first; names only.
pub(super) async fn show_presence(
    req: HttpRequest,
    _user: CurrentUser,
    state: web::Data<AppState>,
) -> Result<HttpResponse, AppError> {
    let query: PresenceQuery = form::decode(req.query_string().as_bytes())?;
    let rows = query.limit.unwrap_or(Rows::DEFAULT);
    let who = state.presence.who(rows).await.ok_or(AppError::NotFound)?;
    Ok(HttpResponse::Ok()
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .json(who))
}
