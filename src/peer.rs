//! The client's TCP connection as the kernel sees it, for the two things actix-web does not
//! do: end a handler whose client has hung up (actix-web#3462: a held long poll would stay
//! in CLOSE_WAIT until its hold ran out), and drop a connection whose client has stopped
//! reading (actix-web has no write deadline, so a WebSocket that never reads would keep
//! its buffers forever).
//!
//! The handle is the connection's file descriptor number, taken in `on_connect`. Using a
//! bare number is sound only while the connection's dispatcher, which owns the socket,
//! is alive: otherwise the number may already name someone else's connection. Both users
//! keep to that on the worker thread the dispatcher runs on, with no `.await` between the
//! check and the call:
//! - a request handler is itself owned by the dispatcher, so while it runs the socket is
//!   open;
//! - a WebSocket task outlives its request, so it asks [`BodyAlive`], a token the response
//!   body (owned by the dispatcher) holds.
#![allow(unsafe_code)]

use std::any::Any;
use std::mem::MaybeUninit;
use std::os::fd::{AsRawFd, BorrowedFd, RawFd};
use std::rc::{Rc, Weak};
use std::time::Duration;

use actix_web::body::{BodySize, BoxBody, MessageBody};
use actix_web::dev::Extensions;
use actix_web::{HttpRequest, HttpResponse};
use socket2::SockRef;

/// How often a handler waiting on the room looks whether its client is still there.
const HANG_UP_CHECK: Duration = Duration::from_millis(500);

/// One accepted connection's socket.
#[derive(Clone, Copy, Debug)]
pub struct PeerSocket(RawFd);

impl PeerSocket {
    /// The `on_connect` hook: remembers the socket of every TCP connection.
    pub fn on_connect(connection: &dyn Any, data: &mut Extensions) {
        if let Some(stream) = connection.downcast_ref::<actix_web::rt::net::TcpStream>() {
            data.insert(PeerSocket(stream.as_raw_fd()));
        }
    }

    /// The socket of the connection `req` came on (`None` in tests without a server).
    pub fn of(req: &HttpRequest) -> Option<Self> {
        req.conn_data::<PeerSocket>().copied()
    }

    fn with<T>(self, f: impl FnOnce(SockRef<'_>) -> T) -> T {
        // SAFETY: see the module comment: every caller holds the dispatcher alive, so the
        // descriptor is open and is this connection's for the duration of `f`.
        let fd = unsafe { BorrowedFd::borrow_raw(self.0) };
        f(SockRef::from(&fd))
    }

    /// True once the client has closed its side or reset the connection. Bytes waiting to
    /// be read (a pipelined request) mean it is still there. Call only from a handler of
    /// this connection.
    pub fn has_hung_up(self) -> bool {
        let mut byte = [MaybeUninit::<u8>::uninit()];
        // The socket is non-blocking (tokio's), so this never waits.
        match self.with(|s| s.peek(&mut byte)) {
            Ok(0) => true,
            Ok(_) => false,
            Err(e) => !matches!(
                e.kind(),
                std::io::ErrorKind::WouldBlock | std::io::ErrorKind::Interrupted
            ),
        }
    }

    /// Resolves when the client hangs up; pending forever otherwise. Polled inside a
    /// request handler only. A client that half-closes its side while waiting for the
    /// answer counts as gone: browsers and HTTP libraries do not do that.
    pub async fn hung_up(self) {
        loop {
            tokio::time::sleep(HANG_UP_CHECK).await;
            if self.has_hung_up() {
                return;
            }
        }
    }

    /// Drops the connection at once with a reset, discarding whatever the client has not
    /// read: the dispatcher's next write fails and it closes the socket. Does nothing if
    /// the response body behind `alive` is gone (the dispatcher may be gone with it).
    pub fn abort(self, alive: &BodyAlive) {
        if alive.0.strong_count() == 0 {
            return;
        }
        self.with(|s| {
            // Linger 0: close sends RST and frees the unsent data instead of trying to
            // deliver it to a client that does not read.
            let _ = s.set_linger(Some(Duration::ZERO));
            let _ = s.shutdown(std::net::Shutdown::Both);
        });
    }
}

/// Whether a response body is still held by its connection's dispatcher.
pub struct BodyAlive(Weak<()>);

impl BodyAlive {
    /// Waits (at most `limit`) for the dispatcher to finish with the body; true if it did.
    pub async fn gone_within(&self, limit: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + limit;
        while self.0.strong_count() > 0 {
            if tokio::time::Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        true
    }
}

/// Wraps `response`'s body so that [`BodyAlive`] can tell when the dispatcher drops it.
pub fn watch_body(response: HttpResponse) -> (HttpResponse, BodyAlive) {
    let token = Rc::new(());
    let alive = BodyAlive(Rc::downgrade(&token));
    let response = response
        .map_body(|_, body| Watched {
            body,
            _token: token,
        })
        .map_into_boxed_body();
    (response, alive)
}

struct Watched {
    body: BoxBody,
    _token: Rc<()>,
}

impl MessageBody for Watched {
    type Error = Box<dyn std::error::Error>;

    fn size(&self) -> BodySize {
        self.body.size()
    }

    fn poll_next(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<bytes::Bytes, Self::Error>>> {
        std::pin::Pin::new(&mut self.body).poll_next(cx)
    }
}
