//! `GET /a/message/socket`: the upgrade. Everything is checked before the 101: the login,
//! the Origin (browsers send cookies on cross-site WebSocket handshakes and CORS does not
//! apply, so this check is what stops cross-site WebSocket hijacking), and the cursor.

use std::time::Duration;

use actix_web::{web, HttpRequest, HttpResponse};
use serde::Deserialize;
use tracing::Instrument;

use crate::auth::CurrentUser;
use crate::config::Origin;
use crate::domain::Cursor;
use crate::error::AppError;
use crate::form::{self, empty_as_none};
use crate::frame_limit;
use crate::peer::{self, PeerSocket};
use crate::presence::Via;
use crate::socket::{self, SocketConnection};
use crate::state::AppState;
use crate::xsrf;

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
    user: Option<CurrentUser>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, AppError> {
    let CurrentUser(login) = user.ok_or(AppError::Forbidden("login required"))?;
    check_origin(
        &req,
        &state.proxies.origin(&req),
        &state.security.allowed_origins,
    )?;
    let query: SocketQuery = form::decode(req.query_string().as_bytes())?;
    let context = state.sockets.clone();
    let slot = context.limits.acquire(&login.id)?;
    // A cursor from an instance that has read further is waited for (this one is usually
    // milliseconds behind); past the bound the client is asked to come back.
    let subscription = tokio::time::timeout(CATCH_UP_WAIT, state.hub.subscribe(query.cursor))
        .await
        .map_err(|_| AppError::StoreUnavailable)??;
    let (body, oversize) = frame_limit::guard(&req, body, context.max_frame_bytes)?;
    let (response, session, messages) =
        actix_ws::handle(&req, body).map_err(|e| AppError::BadRequest(e.to_string()))?;
    let (response, alive) = peer::watch_body(response);
    let max_bytes = context.max_frame_bytes;
    let messages = messages
        .max_frame_size(max_bytes)
        .aggregate_continuations()
        .max_continuation_size(max_bytes);
    let xsrf_cookie = req.cookie(xsrf::COOKIE_NAME).map(|c| c.value().to_owned());
    tracing::debug!(user = %login.name, "socket open");
    let online = context.presence.connect(&login, Via::Socket);
    // The socket outlives this request; its logs keep the request's span (and id).
    let connection = socket::serve(SocketConnection {
        context,
        login,
        address: state.proxies.client_address(&req).into(),
        xsrf_cookie,
        session,
        messages,
        subscription,
        slot,
        online,
        oversize,
        peer: PeerSocket::of(&req),
        alive,
    });
    actix_web::rt::spawn(connection.in_current_span());
    Ok(response)
}

/// The Origin must be this server's own (scheme, host and port as the browser addressed
/// it) or on the configured allowlist. Missing or `null` is refused.
fn check_origin(req: &HttpRequest, own: &str, allowed: &[Origin]) -> Result<(), AppError> {
    let origin = req
        .headers()
        .get(actix_web::http::header::ORIGIN)
        .and_then(|v| v.to_str().ok())
        .ok_or(AppError::Forbidden("Origin header required"))?;
    let allowed = origin.eq_ignore_ascii_case(own)
        || allowed
            .iter()
            .any(|a| a.as_str().eq_ignore_ascii_case(origin));
    if allowed {
        Ok(())
    } else {
        tracing::info!(origin, "socket refused: foreign origin");
        Err(AppError::Forbidden(
            "cross-origin WebSockets are not allowed",
        ))
    }
}
