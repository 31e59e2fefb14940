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
    let request_id = match incoming_id(&req) {
        Some(id) => HeaderValue::from_str(id).ok(),
        None => Some(new_request_id()),
    };
    let id_text = request_id
        .as_ref()
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let span = tracing::info_span!(
        "request",
        method = %req.method(),
        route = tracing::field::Empty,
        request_id = id_text,
    );
    // Below `info` the span is off, and so is what only the log needs: the route's pattern
    // (a walk of the routing table and a string) and the clock (profiled on every poll).
    let started = (!span.is_disabled()).then(|| {
        let route = req.match_pattern();
        span.record("route", route.as_deref().unwrap_or("unmatched"));
        Instant::now()
    });
    let result = next.call(req).instrument(span.clone()).await;
    let finished = |status: u16| {
        if let Some(started) = started {
            let latency_ms = started.elapsed().as_secs_f64() * 1000.0;
            span.in_scope(|| tracing::info!(status, latency_ms, "finished"));
        }
    };
    match result {
        Ok(mut response) => {
            finished(response.status().as_u16());
            if let Some(value) = request_id {
                response.headers_mut().insert(REQUEST_ID_HEADER, value);
            }
            Ok(response)
        }
        Err(error) => {
            finished(error.as_response_error().status_code().as_u16());
            Err(error)
        }
    }
}

/// An `X-Request-Id` from the caller, if it is 1 to 64 of `[A-Za-z0-9._-]`.
fn incoming_id(req: &ServiceRequest) -> Option<&str> {
    let value = req.headers().get(REQUEST_ID_HEADER)?.to_str().ok()?;
    let sane = (1..=64).contains(&value.len())
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
    sane.then_some(value)
}

/// A new id: a random UUID, unique across instances without any coordination. Its bits
/// come from the thread's generator, not the system's (`Uuid::new_v4` asks the kernel each
/// time: a system call per request).
fn new_request_id() -> HeaderValue {
    let uuid = uuid::Builder::from_random_bytes(rand::random()).into_uuid();
    let mut text = [0u8; uuid::fmt::Hyphenated::LENGTH];
    HeaderValue::from_str(uuid.hyphenated().encode_lower(&mut text))
        .expect("a UUID is a valid header value")
}
