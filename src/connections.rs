//! The connection limit and the write deadline. Requests in flight plus open WebSockets
//! are capped by `server.max_connections`, so a flood degrades into quick 503s instead of
//! exhausting file descriptors and memory, and each client address by its share,
//! `server.max_connections_per_address` (429), so no one address can make the server
//! answer 503 to everyone else. A request counts until its answer is written, a socket
//! while it is open; an answer not written within `server.write_timeout_secs` has its
//! connection cut, so a client that never reads holds neither a slot nor memory for long.

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use actix_web::body::{BodySize, BoxBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::StatusCode;
use actix_web::middleware::Next;
use actix_web::{web, HttpResponse};
use bytes::Bytes;

use crate::forwarded::{ClientKey, Provenance};
use crate::metrics::Metrics;
use crate::peer::{PeerSocket, WriteDeadline};

/// The most of an answer handed to the connection at once: actix-web copies each chunk
/// into its write buffer, so a multi-megabyte answer as one chunk would be copied whole for
/// a client that reads none of it. In slices of this size the buffer stays near its 32 KiB
/// mark and the rest stays in the shared bytes the answer was made of.
const SLICE: usize = 16 * 1024;

/// The counters the limit reads: its own in-flight count and the open-socket gauge.
#[derive(Clone)]
pub struct ConnectionLimit {
    max: u64,
    /// Requests being served now (held polls included; upgraded sockets count separately).
    in_flight: Arc<AtomicU64>,
    metrics: Arc<Metrics>,
    write_timeout: Duration,
    /// Requests and sockets per client address (as `forwarded` resolves it), and the most
    /// one address may hold.
    per_address: Arc<Mutex<HashMap<ClientKey, u64>>>,
    address_max: u64,
    /// Who a request is from.
    provenance: Provenance,
}

/// Counts one client address's request or socket while it lives.
struct AddressSlot {
    counts: Arc<Mutex<HashMap<ClientKey, u64>>>,
    address: ClientKey,
}

impl Drop for AddressSlot {
    fn drop(&mut self) {
        let mut counts = self.counts.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(count) = counts.get_mut(&self.address) {
            *count -= 1;
            if *count == 0 {
                counts.remove(&self.address);
            }
        }
    }
}

/// Counts one request while it is being served.
struct InFlight(Arc<AtomicU64>);

impl ConnectionLimit {
    pub fn new(
        max: usize,
        per_address: usize,
        provenance: Provenance,
        write_timeout: Duration,
        metrics: Arc<Metrics>,
    ) -> Self {
        Self {
            max: max as u64,
            in_flight: Arc::default(),
            metrics,
            write_timeout,
            per_address: Arc::default(),
            address_max: per_address as u64,
            provenance,
        }
    }

    /// A slot for one more request or socket of `address`; `None` at its share.
    fn enter_address(&self, address: ClientKey) -> Option<AddressSlot> {
        let mut counts = self.per_address.lock().unwrap_or_else(|e| e.into_inner());
        let count = counts.entry(address).or_insert(0);
        if *count >= self.address_max {
            self.metrics.refused_connections.fetch_add(1, Relaxed);
            return None;
        }
        *count += 1;
        Some(AddressSlot {
            counts: self.per_address.clone(),
            address,
        })
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

/// Middleware: 503 with `Retry-After` once the limit is reached; otherwise the answer,
/// counted until written and cut at its write deadline.
pub async fn limit_connections(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let Some(limit) = req.app_data::<web::Data<ConnectionLimit>>().cloned() else {
        return Ok(next
            .call(req)
            .await?
            .map_body(|_, body| Answer::plain(body.boxed()))
            .map_into_left_body());
    };
    // The whole server first (503), then the address's share of it (429).
    let Some(in_flight) = limit.enter() else {
        let refused = HttpResponse::ServiceUnavailable()
            .insert_header(("Retry-After", "5"))
            .content_type("text/plain; charset=utf-8")
            .body("too many connections; try again shortly");
        return Ok(req.into_response(refused).map_into_right_body());
    };
    let address = limit.provenance.client_address(req.request());
    let Some(address_slot) = limit.enter_address(address) else {
        let refused = HttpResponse::TooManyRequests()
            .insert_header(("Retry-After", "5"))
            .content_type("text/plain; charset=utf-8")
            .body("too many connections from your address; try again shortly");
        return Ok(req.into_response(refused).map_into_right_body());
    };
    let peer = PeerSocket::of(req.request());
    let response = next.call(req).await?;
    // An upgraded socket is counted as a socket, and keeps its own deadlines; its body
    // lives as long as it does, and so its address's slot.
    if response.status() == StatusCode::SWITCHING_PROTOCOLS {
        return Ok(response
            .map_body(|_, body| Answer {
                _address: Some(address_slot),
                ..Answer::plain(body.boxed())
            })
            .map_into_left_body());
    }
    let deadline = peer.map(|peer| peer.write_deadline(Instant::now() + limit.write_timeout));
    Ok(response
        .map_body(|_, body| Answer {
            body: body.boxed(),
            rest: Bytes::new(),
            _in_flight: Some(in_flight),
            _address: Some(address_slot),
            _deadline: deadline,
        })
        .map_into_left_body())
}

/// An answer's body on its way out: handed over in slices of at most [`SLICE`], holding
/// its connection slot and its write deadline until the dispatcher has taken all of it.
pub struct Answer {
    body: BoxBody,
    /// What is left of the last chunk the body gave.
    rest: Bytes,
    _in_flight: Option<InFlight>,
    _address: Option<AddressSlot>,
    _deadline: Option<WriteDeadline>,
}

impl Answer {
    fn plain(body: BoxBody) -> Self {
        Self {
            body,
            rest: Bytes::new(),
            _in_flight: None,
            _address: None,
            _deadline: None,
        }
    }
}

impl MessageBody for Answer {
    type Error = <BoxBody as MessageBody>::Error;

    fn size(&self) -> BodySize {
        self.body.size()
    }

    fn poll_next(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Bytes, Self::Error>>> {
        let this = &mut *self;
        if this.rest.is_empty() {
            match Pin::new(&mut this.body).poll_next(cx) {
                Poll::Ready(Some(Ok(chunk))) => this.rest = chunk,
                other => return other,
            }
        }
        let slice = this.rest.split_to(this.rest.len().min(SLICE));
        Poll::Ready(Some(Ok(slice)))
    }
}
