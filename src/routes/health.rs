//! `/healthz` and `/metrics`.

use std::sync::atomic::Ordering::Relaxed;

use actix_web::{web, HttpRequest, HttpResponse};

use crate::error::AppError;
use crate::state::AppState;

pub(super) async fn healthz(state: web::Data<AppState>) -> HttpResponse {
    if state.shutting_down.load(Relaxed) {
        HttpResponse::ServiceUnavailable()
            .content_type("text/plain")
            .body("shutting down")
    } else if state.metrics.store_up.load(Relaxed) == 0 {
        HttpResponse::ServiceUnavailable()
            .content_type("text/plain")
            .body("message store unreachable")
    } else {
        HttpResponse::Ok().content_type("text/plain").body("ok")
    }
}

/// The counters, only to the addresses in `server.metrics_allow`: how busy the room is
/// (and how it is attacked) is the operator's to know.
pub(super) async fn metrics(
    req: HttpRequest,
    state: web::Data<AppState>,
) -> Result<HttpResponse, AppError> {
    let client = state.http.provenance.client_ip(&req);
    if !client.is_some_and(|ip| state.http.metrics_allow.contains(&ip)) {
        return Err(AppError::Forbidden(
            "metrics are not served to this address",
        ));
    }
    Ok(HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4; charset=utf-8")
        .body(state.metrics.render()))
}
