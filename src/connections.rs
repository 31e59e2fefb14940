//! The connection limit: requests in flight plus open WebSockets, capped by
//! `server.max_connections`, so a flood degrades into quick 503s instead of exhausting file
//! descriptors and memory.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::middleware::Next;
use actix_web::{web, HttpResponse};

use crate::metrics::Metrics;

/// The counters the limit reads: its own in-flight count and the open-socket gauge.
#[derive(Clone)]
pub struct ConnectionLimit {
    max: u64,
    /// Requests being served now (held polls included; upgraded sockets count separately).
    in_flight: Arc<AtomicU64>,
    metrics: Arc<Metrics>,
}

/// Counts one request while it is being served.
struct InFlight(Arc<AtomicU64>);

impl ConnectionLimit {
    pub fn new(max: usize, metrics: Arc<Metrics>) -> Self {
        Self {
            max: max as u64,
            in_flight: Arc::default(),
            metrics,
        }
    }

    fn enter(&self) -> Option<InFlight> {
        let open = self.in_flight.fetch_add(1, Relaxed) + self.metrics.sockets.load(Relaxed);
        let guard = InFlight(self.in_flight.clone());
        if open >= self.max {
            self.metrics.refused_connections.fetch_add(1, Relaxed);
            None // `guard` drops here and gives the slot back.
        } else {
            Some(guard)
        }
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Relaxed);
    }
}

/// Middleware: 503 with `Retry-After` once the limit is reached.
pub async fn limit_connections(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let guard = req
        .app_data::<web::Data<ConnectionLimit>>()
        .and_then(|limit| limit.enter());
    match guard {
        Some(_guard) => Ok(next.call(req).await?.map_into_left_body()),
        None => {
            let refused = HttpResponse::ServiceUnavailable()
                .insert_header(("Retry-After", "5"))
                .content_type("text/plain; charset=utf-8")
                .body("too many connections; try again shortly");
            Ok(req.into_response(refused).map_into_right_body())
        }
    }
}
