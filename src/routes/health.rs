//! `/healthz` and `/metrics`.

use std::sync::atomic::Ordering::Relaxed;

use actix_web::{web, HttpResponse};

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

pub(super) async fn metrics(state: web::Data<AppState>) -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4; charset=utf-8")
        .body(state.metrics.render())
}
