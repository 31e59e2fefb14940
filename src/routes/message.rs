//! `POST /a/message/new` and `POST /a/message/updates` (the long poll).

use actix_web::http::header;
use actix_web::{web, HttpRequest, HttpResponse};

use super::checked_form;
use crate::auth::CurrentUser;
use crate::domain::is_local_path;
use crate::error::AppError;
use crate::posting::post_message as post_message_to_room;
use crate::startup::AppState;

pub async fn post_message(
    req: HttpRequest,
    CurrentUser(login): CurrentUser,
    body: web::Bytes,
    state: web::Data<AppState>,
) -> Result<HttpResponse, AppError> {
    let form = checked_form(&req, &body, &state, &login)?;
    let next = match form.get_non_empty("next") {
        Some(next) if !is_local_path(next) => {
            return Err(AppError::BadRequest("next must be a local path".into()))
        }
        next => next,
    };
    let raw_body = form
        .get("body")
        .ok_or_else(|| AppError::BadRequest("missing argument body".into()))?;
    let entry = post_message_to_room(&state, &login, raw_body).await?;
    Ok(match next {
        Some(next) => HttpResponse::Found()
            .insert_header((header::LOCATION, next))
            .finish(),
        None => HttpResponse::Ok()
            .content_type("application/json")
            .insert_header((header::CACHE_CONTROL, "no-store"))
            .body(entry.json.clone().into_bytes()),
    })
}

pub async fn poll_updates(
    req: HttpRequest,
    CurrentUser(login): CurrentUser,
    body: web::Bytes,
    state: web::Data<AppState>,
) -> Result<HttpResponse, AppError> {
    let form = checked_form(&req, &body, &state, &login)?;
    let cursor = form.get_non_empty("cursor").map(str::to_owned);
    let frame = state
        .hub
        .poll(cursor, state.settings.room.poll_timeout())
        .await;
    Ok(HttpResponse::Ok()
        .content_type("application/json")
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .body(frame.into_bytes()))
}
