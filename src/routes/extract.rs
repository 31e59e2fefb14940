//! What handlers would otherwise each do first, as extractors: [`CheckedForm`] (every POST's
//! checks, in order, then the typed form) and [`ClientAddress`].

use std::future::{ready, Ready};
use std::rc::Rc;

use actix_web::dev::Payload;
use actix_web::http::header;
use actix_web::{web, FromRequest, HttpRequest};
use futures_core::future::LocalBoxFuture;
use serde::de::DeserializeOwned;

use crate::auth::{CurrentUser, Login};
use crate::error::AppError;
use crate::form;
use crate::forwarded::ClientKey;
use crate::state::AppState;

/// A POST's form, after every check a POST passes, in this order: the login (403), the
/// origin policy (403), the content type (415), the body, bounded in size (413) and time
/// (408), decoded strictly (400), the XSRF token for this login (403, before any other
/// field is judged), and then the route's own fields into `T` (400).
pub(super) struct CheckedForm<T> {
    pub(super) login: Rc<Login>,
    pub(super) form: T,
}

impl<T: DeserializeOwned + 'static> FromRequest for CheckedForm<T> {
    type Error = AppError;
    type Future = LocalBoxFuture<'static, Result<Self, AppError>>;

    fn from_request(req: &HttpRequest, payload: &mut Payload) -> Self::Future {
        let req = req.clone();
        let user = CurrentUser::from_request(&req, payload).into_inner();
        let payload = web::Payload::from_request(&req, payload).into_inner();
        Box::pin(async move {
            let CurrentUser(login) = user?;
            let payload = payload.map_err(|e| AppError::BadRequest(e.to_string()))?;
            let state = app_state(&req)?;
            state.http.provenance.check_post(&req)?;
            require_form_content_type(&req)?;
            let body = read_body(&req, payload, &state).await?;
            let posted = form::decode_posted::<T>(&body)?;
            state
                .xsrf
                .check_request(&req, posted.xsrf.as_deref(), &login.id.as_str())?;
            Ok(Self {
                login,
                form: posted.form?,
            })
        })
    }
}

/// The client's address, for its limits (see `forwarded`).
pub(super) struct ClientAddress(pub(super) ClientKey);

impl FromRequest for ClientAddress {
    type Error = AppError;
    type Future = Ready<Result<Self, AppError>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        ready(app_state(req).map(|state| Self(state.http.provenance.client_address(req))))
    }
}

fn app_state(req: &HttpRequest) -> Result<web::Data<AppState>, AppError> {
    req.app_data::<web::Data<AppState>>()
        .cloned()
        .ok_or_else(|| AppError::Internal("the application state is not configured".into()))
}

/// A POST body must be `application/x-www-form-urlencoded` (or have no content type).
fn require_form_content_type(req: &HttpRequest) -> Result<(), AppError> {
    if let Some(content_type) = req.headers().get(header::CONTENT_TYPE) {
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
    Ok(())
}

/// Reads a POST body: 413 past the form limit (at once when `Content-Length` says so), 408
/// with the connection closed when it has not arrived in full within the body timeout,
/// so a client that sends nothing (or a byte a second) cannot hold a connection forever.
async fn read_body(
    req: &HttpRequest,
    payload: web::Payload,
    state: &AppState,
) -> Result<web::Bytes, AppError> {
    let limit = state.http.form_limit_bytes;
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    if declared.is_some_and(|length| length > limit) {
        return Err(AppError::PayloadTooLarge);
    }
    match tokio::time::timeout(state.http.body_timeout, collect(payload, declared, limit)).await {
        Err(_) => Err(AppError::BodyTimeout),
        Ok(body) => body,
    }
}

/// The body's bytes, in a buffer the size the client declared. (actix-web's
/// `to_bytes_limited` starts every body of unknown size at 32 KiB, and a held poll kept
/// that for its whole hold: most of a held poll's memory, for a form of a hundred bytes.)
async fn collect(
    mut payload: web::Payload,
    declared: Option<usize>,
    limit: usize,
) -> Result<web::Bytes, AppError> {
    use futures_core::Stream;
    let mut body = web::BytesMut::with_capacity(declared.unwrap_or(256).min(limit));
    while let Some(chunk) =
        std::future::poll_fn(|cx| std::pin::Pin::new(&mut payload).poll_next(cx)).await
    {
        let chunk = chunk.map_err(|error| AppError::BadRequest(error.to_string()))?;
        if body.len() + chunk.len() > limit {
            return Err(AppError::PayloadTooLarge);
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body.freeze())
}
