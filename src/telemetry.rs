//! Structured logs through `tracing`, and a span per request. `RUST_LOG` picks the level
//! (default `info`); `log.format` picks human-readable text or one JSON object per line.
//! Nothing logged anywhere carries cookies, tokens, query strings or message bodies.

use std::time::Instant;

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header::{HeaderName, HeaderValue};
use actix_web::middleware::Next;
use tracing::Instrument;
use tracing_subscriber::EnvFilter;

use crate::config::LogFormat;

pub const REQUEST_ID_HEADER: HeaderName = HeaderName::from_static("x-request-id");

pub fn init(format: LogFormat) {
    let filter = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new("info,actix_server=warn"));
    let logs = tracing_subscriber::fmt().with_env_filter(filter);
    match format {
        // Colours only for a terminal: text sent to a file or a collector stays plain.
        LogFormat::Text => logs
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stdout()))
            .init(),
        LogFormat::Json => logs
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .with_span_list(false)
            .init(),
    }
}

/// Middleware: every request runs in a `request` span (method, route pattern, request id)
/// and ends with one `finished` line carrying the status and the latency. The id is the
/// caller's `X-Request-Id` when it is a sane token (a proxy in front made it), else a new
/// one; either way it is echoed in the response, so a client can quote it.
pub async fn trace_requests(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let started = Instant::now();
    let request_id = incoming_id(&req).unwrap_or_else(new_request_id);
    let route = req.match_pattern();
    let span = tracing::info_span!(
        "request",
        method = %req.method(),
        route = route.as_deref().unwrap_or("unmatched"),
        request_id = %request_id,
    );
    let result = next.call(req).instrument(span.clone()).await;
    let latency_ms = started.elapsed().as_secs_f64() * 1000.0;
    match result {
        Ok(mut response) => {
            let status = response.status().as_u16();
            span.in_scope(|| tracing::info!(status, latency_ms, "finished"));
            if let Ok(value) = HeaderValue::from_str(&request_id) {
                response.headers_mut().insert(REQUEST_ID_HEADER, value);
            }
            Ok(response)
        }
        Err(error) => {
            let status = error.as_response_error().status_code().as_u16();
            span.in_scope(|| tracing::info!(status, latency_ms, "finished"));
            Err(error)
        }
    }
}

/// An `X-Request-Id` from the caller, if it is 1 to 64 of `[A-Za-z0-9._-]`.
fn incoming_id(req: &ServiceRequest) -> Option<String> {
    let value = req.headers().get(REQUEST_ID_HEADER)?.to_str().ok()?;
    let sane = (1..=64).contains(&value.len())
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
    sane.then(|| value.to_owned())
}

/// A new id: a random UUID, unique across instances without any coordination.
fn new_request_id() -> String {
    uuid::Uuid::new_v4().hyphenated().to_string()
}
