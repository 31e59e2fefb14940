//! One error type for every route: each variant maps to a status and a body, so handlers
//! just use `?`. Client mistakes say what was wrong; server faults say nothing internal
//! and are logged once with their cause.

use actix_web::http::{header, StatusCode};
use actix_web::{HttpResponse, ResponseError};
use serde::Serialize;

use crate::domain::InputError;
use crate::form::FormError;
use crate::hub::HubClosed;

#[derive(Debug, thiserror::Error)]
pub enum AppError {
    /// XSRF failures and requests that need a login: 403 `text/plain`.
    #[error("{0}")]
    Forbidden(&'static str),
    /// A request that cannot be acted on: 400 with a JSON `{"error": ...}`.
    #[error("{0}")]
    BadRequest(String),
    #[error(transparent)]
    Input(#[from] InputError),
    #[error(transparent)]
    Form(#[from] FormError),
    #[error("send the form as application/x-www-form-urlencoded")]
    UnsupportedMediaType,
    #[error("too many messages; wait {retry_after_secs} s")]
    RateLimited { retry_after_secs: u64 },
    #[error("too many open sockets and held polls for this login")]
    TooManyConnections,
    #[error("not found")]
    NotFound,
    #[error("the request body is too large")]
    PayloadTooLarge,
    #[error("the request body did not arrive in time")]
    BodyTimeout,
    #[error("the server is shutting down")]
    ShuttingDown,
    #[error("the message store is unavailable; try again shortly")]
    StoreUnavailable,
    #[error("internal error")]
    Internal(#[source] Box<dyn std::error::Error + Send + Sync>),
}

/// The room only closes when the server shuts down.
impl From<HubClosed> for AppError {
    fn from(_: HubClosed) -> Self {
        Self::ShuttingDown
    }
}

impl AppError {
    pub fn internal(error: impl std::error::Error + Send + Sync + 'static) -> Self {
        Self::Internal(Box::new(error))
    }
}

/// What a post refused during a store outage is told to wait.
const STORE_RETRY_AFTER_SECS: u64 = 2;
/// `Retry-After` for a login past its connection cap.
const CONNECTIONS_RETRY_AFTER_SECS: u64 = 5;

impl AppError {
    /// Refused by a rate limit; `Retry-After` is the wait in whole seconds, at least one.
    pub fn rate_limited(wait: std::time::Duration) -> Self {
        Self::RateLimited {
            retry_after_secs: wait.as_secs_f64().ceil().max(1.0) as u64,
        }
    }
}

#[derive(Serialize)]
struct ErrorBody<'a> {
    error: &'a str,
}

impl ResponseError for AppError {
    fn status_code(&self) -> StatusCode {
        match self {
            Self::Forbidden(_) => StatusCode::FORBIDDEN,
            Self::BadRequest(_) | Self::Input(_) | Self::Form(_) => StatusCode::BAD_REQUEST,
            Self::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Self::NotFound => StatusCode::NOT_FOUND,
            Self::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            Self::BodyTimeout => StatusCode::REQUEST_TIMEOUT,
            Self::RateLimited { .. } | Self::TooManyConnections => StatusCode::TOO_MANY_REQUESTS,
            Self::ShuttingDown | Self::StoreUnavailable => StatusCode::SERVICE_UNAVAILABLE,
            Self::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn error_response(&self) -> HttpResponse {
        let mut response = HttpResponse::build(self.status_code());
        response.insert_header((header::CACHE_CONTROL, "no-store"));
        if matches!(self, Self::BodyTimeout) {
            // What is left of the body may still come: the connection cannot be reused.
            response.force_close();
        }
        match self {
            Self::Forbidden(reason) => response
                .content_type("text/plain; charset=utf-8")
                .body(*reason),
            Self::Internal(cause) => {
                tracing::error!(error.cause = %cause, "request failed");
                response.json(ErrorBody {
                    error: "internal error",
                })
            }
            Self::RateLimited { retry_after_secs } => response
                .insert_header((header::RETRY_AFTER, retry_after_secs.to_string()))
                .json(ErrorBody {
                    error: &self.to_string(),
                }),
            // One of the login's connections must end first; a poll ends within its hold.
            Self::TooManyConnections => response
                .insert_header((
                    header::RETRY_AFTER,
                    CONNECTIONS_RETRY_AFTER_SECS.to_string(),
                ))
                .json(ErrorBody {
                    error: &self.to_string(),
                }),
            Self::StoreUnavailable => response
                .insert_header((header::RETRY_AFTER, STORE_RETRY_AFTER_SECS.to_string()))
                .json(ErrorBody {
                    error: &self.to_string(),
                }),
            _ => response.json(ErrorBody {
                error: &self.to_string(),
            }),
        }
    }
}
