//! `GET /a/message/socket`: the upgrade. Everything is checked before the 101: the login,
//! the Origin (see `forwarded::Provenance::check_upgrade`), the cursor, the login's cap.

use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

use actix_web::{web, HttpRequest, HttpResponse};
use serde::Deserialize;
use tracing::Instrument;

use super::extract::ClientAddress;
use crate::auth::CurrentUser;
use crate::domain::Cursor;
use crate::error::AppError;
use crate::form::{self, empty_as_none};
use crate::frame_limit;
use crate::peer::{self, PeerSocket};
use crate::presence::Via;
use crate::socket::{self, SocketConnection};
use crate::state::AppState;
use crate::xsrf::{self, Token};

/// How long an upgrade waits for this instance to read as far as its cursor.
const CATCH_UP_WAIT: Duration = Duration::from_secs(10);

/// The query of the upgrade.
#[derive(Deserialize)]
struct SocketQuery {
    #[serde(default, deserialize_with = "empty_as_none")]
    cursor: Option<Cursor>,
}

pub(super) async fn open_socket(
    req: HttpRequest,
    body: web::Payload,
    CurrentUser(login): CurrentUser,
    ClientAddress(address): ClientAddress,
    state: web::Data<AppState>,
) -> Result<HttpResponse, AppError> {
    state.http.provenance.check_upgrade(&req)?;
    let query: SocketQuery = form::decode(req.query_string().as_bytes())?;
    let slot = state.logins.open_socket(&login.id)?;
    // A cursor from an instance that has read further is waited for (this one is usually
    // milliseconds behind); past the bound the client is asked to come back.
    let subscription = tokio::time::timeout(CATCH_UP_WAIT, state.room.subscribe(query.cursor))
        .await
        .map_err(|_| AppError::StoreUnavailable)??;
    let max_bytes = state.websocket.max_frame_bytes;
    let body = frame_limit::guard(&req, body, max_bytes)?;
    let (response, mut session, messages) =
        actix_ws::handle(&req, body).map_err(|e| AppError::BadRequest(e.to_string()))?;
    // The replay goes first, queued here into the session's new (empty) queue, so it never
    // waits and the socket's task never holds it. Not for a login ended meanwhile: its
    // task closes it at once.
    if let Some(replay) = subscription.replay.filter(|_| !slot.is_ended()) {
        session
            .text(replay)
            .await
            .map_err(|_| AppError::Internal("a new socket's queue is closed".into()))?;
        let replayed = subscription.replayed as u64;
        state.metrics.delivered.fetch_add(replayed, Relaxed);
    }
    let (response, alive) = peer::watch_body(response);
    let messages = messages
        .max_frame_size(max_bytes)
        .aggregate_continuations()
        .max_continuation_size(max_bytes);
    let xsrf_cookie = form::cookie_value(&req, xsrf::COOKIE_NAME).and_then(|c| Token::parse(&c));
    tracing::debug!(user = %login.name, "socket open");
    let online = state.presence.connect(&login, Via::Socket);
    // The socket outlives this request; its logs keep the request's span (and id).
    let connection = socket::serve(SocketConnection {
        state,
        login,
        address,
        xsrf_cookie,
        session,
        messages,
        feed: subscription.feed,
        slot,
        online,
        peer: PeerSocket::of(&req),
        alive,
    });
    actix_web::rt::spawn(connection.in_current_span());
    Ok(response)
}
