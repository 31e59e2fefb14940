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
//!   open; the per-thread hang-up watcher looks only at requests still registered, and a
//!   request leaves the register when its future is dropped;
//! - a WebSocket task outlives its request, so it asks [`BodyAlive`], a token the response
//!   body (owned by the dispatcher) holds;
//! - an answer's write deadline is registered by a guard its response body holds, and the
//!   guard's drop unregisters it, so a registered deadline's socket is open.
#![allow(unsafe_code)]

use std::any::Any;
use std::cell::RefCell;
use std::collections::HashMap;
use std::future::Future;
use std::mem::MaybeUninit;
use std::os::fd::{AsRawFd, BorrowedFd, RawFd};
use std::pin::Pin;
use std::rc::{Rc, Weak};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use actix_web::body::{BodySize, BoxBody, MessageBody};
use actix_web::dev::Extensions;
use actix_web::{HttpRequest, HttpResponse};
use socket2::SockRef;
use tokio::sync::oneshot;

/// How often a handler waiting on the room looks whether its client is still there.
const HANG_UP_CHECK: Duration = Duration::from_millis(500);
/// How often each worker looks for answers past their write deadline.
const DEADLINE_CHECK: Duration = Duration::from_millis(500);

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

    /// Resolves when the client hangs up; pending forever otherwise. Awaited inside a
    /// request handler only. A client that half-closes its side while waiting for the
    /// answer counts as gone: browsers and HTTP libraries do not do that.
    ///
    /// One watcher per worker thread looks at all of its held requests every
    /// `HANG_UP_CHECK` and wakes only those whose client has gone: a timer per request
    /// would wake every held poll (and its whole connection) twice a second.
    pub fn hung_up(self) -> HangUp {
        let (tell, told) = oneshot::channel();
        let key = WATCHED.with_borrow_mut(|watched| {
            if !watched.running {
                watched.running = true;
                actix_web::rt::spawn(watch_this_thread());
            }
            watched.next_key += 1;
            watched.requests.insert(watched.next_key, (self, tell));
            watched.next_key
        });
        HangUp { key, told }
    }

    /// Cuts the connection (see [`PeerSocket::abort`]) if the answer is still being written
    /// at `deadline`: actix-web has no write deadline, and a client that does not read
    /// would otherwise keep its answer and its connection slot for good. Hold the guard
    /// in the response body: once the dispatcher has taken the whole body, the guard
    /// drops and the deadline with it (what is left, at most `h1_write_buffer_size`, is
    /// closed by actix-web's own keep-alive timer).
    pub fn write_deadline(self, deadline: Instant) -> WriteDeadline {
        let key = DEADLINES.with_borrow_mut(|answers| {
            if !answers.running {
                answers.running = true;
                actix_web::rt::spawn(enforce_deadlines_on_this_thread());
            }
            answers.next_key += 1;
            answers.deadlines.insert(answers.next_key, (self, deadline));
            answers.next_key
        });
        WriteDeadline { key }
    }

    /// Drops the connection at once with a reset, discarding whatever the client has not
    /// read: the dispatcher's next write fails and it closes the socket. Does nothing if
    /// the response body behind `alive` is gone (the dispatcher may be gone with it).
    pub fn abort(self, alive: &BodyAlive) {
        if alive.0.strong_count() == 0 {
            return;
        }
        self.reset();
    }

    /// See [`PeerSocket::abort`]; the caller knows the dispatcher is alive.
    fn reset(self) {
        self.with(|s| {
            // Linger 0: close sends RST and frees the unsent data instead of trying to
            // deliver it to a client that does not read.
            let _ = s.set_linger(Some(Duration::ZERO));
            let _ = s.shutdown(std::net::Shutdown::Both);
        });
    }
}

/// The requests of this worker thread waiting on [`PeerSocket::hung_up`].
#[derive(Default)]
struct HeldRequests {
    requests: HashMap<u64, (PeerSocket, oneshot::Sender<()>)>,
    next_key: u64,
    running: bool,
}

thread_local! {
    static WATCHED: RefCell<HeldRequests> = RefCell::default();
}

/// Resolves when the client of its request has hung up. Dropping it (the request is
/// answered, or the handler is dropped with its connection) stops the watching at once,
/// so the watcher never looks at a socket whose dispatcher is gone.
pub struct HangUp {
    key: u64,
    told: oneshot::Receiver<()>,
}

impl Future for HangUp {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        match Pin::new(&mut self.told).poll(cx) {
            Poll::Ready(Ok(())) => Poll::Ready(()),
            // The watcher is gone (the worker is stopping): never resolves.
            Poll::Ready(Err(_)) | Poll::Pending => Poll::Pending,
        }
    }
}

impl Drop for HangUp {
    fn drop(&mut self) {
        // `try_with`: a thread being torn down has dropped the registry already.
        let _ = WATCHED.try_with(|watched| watched.borrow_mut().requests.remove(&self.key));
    }
}

/// This worker thread's watcher: every `HANG_UP_CHECK`, tells each request whose client
/// has hung up. Runs on the thread whose dispatchers own the sockets it looks at, and every
/// request it holds is still registered, so still owned by a live dispatcher (see the
/// module comment).
async fn watch_this_thread() {
    let mut tick = tokio::time::interval(HANG_UP_CHECK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        WATCHED.with_borrow_mut(|watched| {
            let gone = watched
                .requests
                .extract_if(|_, (peer, _)| peer.has_hung_up());
            for (_, (_, tell)) in gone {
                let _ = tell.send(());
            }
        });
    }
}

/// The answers of this worker thread being written, each with its deadline.
#[derive(Default)]
struct Deadlines {
    deadlines: HashMap<u64, (PeerSocket, Instant)>,
    next_key: u64,
    running: bool,
}

thread_local! {
    static DEADLINES: RefCell<Deadlines> = RefCell::default();
}

/// An answer's write deadline, registered while this lives (in the response body).
pub struct WriteDeadline {
    key: u64,
}

impl Drop for WriteDeadline {
    fn drop(&mut self) {
        let _ = DEADLINES.try_with(|answers| answers.borrow_mut().deadlines.remove(&self.key));
    }
}

/// This worker thread's enforcer: every `DEADLINE_CHECK`, cuts the connections of answers
/// past their deadline. A registered answer's body is alive, so its socket is open (see
/// the module comment).
async fn enforce_deadlines_on_this_thread() {
    let mut tick = tokio::time::interval(DEADLINE_CHECK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let now = Instant::now();
        DEADLINES.with_borrow_mut(|answers| {
            let late = answers
                .deadlines
                .extract_if(|_, (_, deadline)| *deadline <= now);
            for (_, (peer, _)) in late {
                tracing::debug!("answer not read within the write deadline; connection cut");
                peer.reset();
            }
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
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<bytes::Bytes, Self::Error>>> {
        Pin::new(&mut self.body).poll_next(cx)
    }
}
