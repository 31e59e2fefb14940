//! `POST /a/message/new` and `POST /a/message/updates` (the long poll).

use actix_web::http::header;
use actix_web::{web, HttpRequest, HttpResponse};
use serde::Deserialize;

use super::extract::{CheckedForm, ClientAddress};
use super::pieces::Pieces;
use crate::domain::{Cursor, InputError, LocalPath, PostKey};
use crate::error::AppError;
use crate::form::empty_as_none;
use crate::peer::PeerSocket;
use crate::presence::Via;
use crate::state::AppState;

/// The fields of `POST /a/message/new` (after `_xsrf`).
#[derive(Deserialize)]
pub(super) struct PostForm {
    /// Checked and cleaned up by the room, with the configured length limit.
    body: String,
    /// Where to send a browser afterwards (the form without JavaScript).
    #[serde(default, deserialize_with = "empty_as_none")]
    next: Option<LocalPath>,
}

/// The fields of `POST /a/message/updates` (after `_xsrf`).
#[derive(Deserialize)]
pub(super) struct PollForm {
    #[serde(default, deserialize_with = "empty_as_none")]
    cursor: Option<Cursor>,
}

pub(super) async fn post_message(
    req: HttpRequest,
    CheckedForm { login, form }: CheckedForm<PostForm>,
    ClientAddress(address): ClientAddress,
    state: web::Data<AppState>,
) -> Result<HttpResponse, AppError> {
    let key = idempotency_key(&req)?;
    let entry = state
        .room
        .post(&login, &address.to_string(), &form.body, key.as_ref())
        .await?;
    Ok(match form.next {
        Some(next) => HttpResponse::Found()
            .insert_header((header::LOCATION, next.as_str()))
            .finish(),
        None => HttpResponse::Ok()
            .content_type("application/json")
            .insert_header((header::CACHE_CONTROL, "no-store"))
            .body(entry.json.clone().into_bytes()),
    })
}

/// The post's `Idempotency-Key`, if it has one; a malformed one is 400.
fn idempotency_key(req: &HttpRequest) -> Result<Option<PostKey>, AppError> {
    let Some(value) = req.headers().get("idempotency-key") else {
        return Ok(None);
    };
    let text = value.to_str().map_err(|_| InputError::BadIdempotencyKey)?;
    Ok(Some(PostKey::from_header(text)?))
}

pub(super) async fn poll_updates(
    req: HttpRequest,
    // The body is read, checked and dropped here: it is not kept for the hold.
    CheckedForm { login, form }: CheckedForm<PollForm>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, AppError> {
    // Counted with the login's sockets while held: one login cannot hold every slot.
    let _slot = state.logins.hold_poll(&login.id)?;
    // Online while the poll is held, and for the poll window after it is answered.
    let _online = state.presence.connect(&login, Via::Poll);
    let poll = state.room.poll(form.cursor, state.http.poll_timeout);
    // actix-web keeps running a handler whose client has gone (its socket sits in
    // CLOSE_WAIT), so a held poll watches for the hang-up itself and lets go of its
    // place in the room.
    let batch = match PeerSocket::of(&req) {
        Some(peer) => tokio::select! {
            batch = poll => batch,
            () = peer.hung_up() => {
                tracing::debug!("poll abandoned by its client");
                return Ok(HttpResponse::NoContent().finish());
            }
        },
        None => poll.await,
    };
    Ok(HttpResponse::Ok()
        .content_type("application/json")
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .body(Pieces::new(batch.byte_len(), batch.into_pieces())))
}
