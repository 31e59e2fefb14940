//! One WebSocket connection: replay from the cursor, then the room's feed out and posts in,
//! a heartbeat, and a close code for every way it can end.
//!
//! The loop never makes the room wait: the hub only drops a shared frame into a broadcast
//! ring. A client that cannot keep up falls behind in the ring (or stalls our write) and is
//! closed with 1013; it comes back with its cursor and misses nothing.

use std::rc::Rc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant};

use actix_web::web;
use actix_ws::{
    AggregatedMessage, AggregatedMessageStream, CloseCode, CloseReason, ProtocolError, Session,
};
use serde::{Deserialize, Serialize};
use tokio::sync::broadcast::{
    self,
    error::{RecvError, TryRecvError},
};

use crate::auth::Login;
use crate::domain::PostKey;
use crate::error::AppError;
use crate::forwarded::ClientKey;
use crate::frame_limit;
use crate::heartbeat::Beat;
use crate::hub::Frame;
use crate::peer::{BodyAlive, PeerSocket};
use crate::presence::Connection;
use crate::slots::SocketSlot;
use crate::state::AppState;
use crate::xsrf::Token;

/// How long one write may wait for a client before it counts as not reading (shorter
/// when two ping intervals are shorter).
const WRITE_TIMEOUT: Duration = Duration::from_secs(10);
/// Frames written in one go when several are waiting.
const WRITE_BATCH: u64 = 64;
/// How often a blocked write looks at how far behind its client has fallen.
const LAG_CHECK: Duration = Duration::from_millis(50);
const TOO_SLOW: &str = "too slow; reconnect with your cursor";
/// How long a close frame may take to leave before the connection is reset instead.
const CLOSE_GRACE: Duration = Duration::from_secs(1);
const LOGGED_OUT: &str = "logged out";

/// A post over the socket: exactly these keys.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PostFrame {
    body: String,
    #[serde(rename = "_xsrf")]
    xsrf: Option<String>,
    /// The client's name for this post, echoed in its `ack` or `error` frame so the
    /// client knows which of its posts the answer is about.
    nonce: Option<String>,
}

#[derive(Serialize)]
struct ErrorFrame<'a> {
    error: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    nonce: Option<&'a str>,
}

/// The answer to a post that carried a nonce: it is in the room under `id`.
#[derive(Serialize)]
struct AckFrame<'a> {
    ack: &'a str,
    id: &'a str,
}

pub struct SocketConnection {
    /// What every socket shares with the routes.
    pub state: web::Data<AppState>,
    pub login: Rc<Login>,
    /// The client's address (see `forwarded`), for its posting budget.
    pub address: ClientKey,
    /// The `_xsrf` cookie sent with the upgrade: posts must carry the same token.
    pub xsrf_cookie: Option<Token>,
    pub session: Session,
    pub messages: AggregatedMessageStream,
    /// Every frame of the room from the client's cursor on (its replay is already queued).
    pub feed: broadcast::Receiver<Frame>,
    /// Also says when the login is ended (logout, here or on another instance).
    pub slot: SocketSlot,
    /// Counts the login as online while the socket is open.
    pub online: Option<Connection>,
    /// The TCP connection, to drop it when the client stops reading (`None` in tests
    /// without a server), and whether its dispatcher still holds the response.
    pub peer: Option<PeerSocket>,
    pub alive: BodyAlive,
}

/// How a connection ended, and what the client is told.
enum End {
    /// The client closed, or vanished.
    ByClient,
    Close(CloseCode, &'static str),
    /// The client stopped reading: it cannot even take a close frame. Its connection is
    /// dropped with a reset, since actix-web would wait forever to write to it.
    Stalled,
}

/// The socket's whole life. Not an `async fn`: one of those keeps its argument twice (as
/// given, and moved into the body), and every idle socket's task would carry the
/// connection's 432 bytes twice.
#[allow(clippy::manual_async_fn)]
pub fn serve(mut conn: SocketConnection) -> impl std::future::Future<Output = ()> {
    async move {
        let end = run(&mut conn).await;
        // Boxed: it comes once, and the task would otherwise be sized for it all along.
        Box::pin(finish(&mut conn, end)).await;
        // Then the login's slot, then its presence (the fields' order).
        drop(conn);
    }
}

/// Says goodbye the way `end` calls for.
async fn finish(conn: &mut SocketConnection, end: End) {
    let SocketConnection {
        login,
        state,
        peer,
        alive,
        ..
    } = conn;
    let abort = || {
        if let Some(peer) = *peer {
            peer.abort(alive);
        }
    };
    match end {
        End::ByClient => tracing::debug!(user = %login.name, "socket closed by client"),
        End::Stalled => {
            state.metrics.slow_disconnects.fetch_add(1, Relaxed);
            tracing::info!(user = %login.name, "socket dropped: client not reading");
            abort();
        }
        End::Close(code, reason) => {
            if code == CloseCode::Again {
                state.metrics.slow_disconnects.fetch_add(1, Relaxed);
            }
            tracing::debug!(user = %login.name, code = u16::from(code), reason, "closing socket");
            // A close frame ends the response body whatever other handles of the session
            // are left (actix-ws), so a handle of it is enough.
            let close = conn.session.clone().close(Some(CloseReason {
                code,
                description: Some(reason.to_owned()),
            }));
            let queued = tokio::time::timeout(CLOSE_GRACE, close).await.is_ok();
            // The close frame leaves with the response body's end. If that has not come
            // within the grace (the frame is queued behind writes the client does not
            // take, or did not even fit), the client is not reading: reset.
            if !queued || !alive.gone_within(CLOSE_GRACE).await {
                abort();
            }
        }
    }
}

async fn run(conn: &mut SocketConnection) -> End {
    // Ended between the upgrade's login check and taking the slot.
    if conn.slot.is_ended() {
        return End::Close(CloseCode::Policy, LOGGED_OUT);
    }
    // Only what the loop changes is kept here; the settings are read from the state where
    // they are used (the task of every idle socket is sized by what lives across the wait).
    let mut beat = Beat::join(conn.state.websocket.ping_interval);
    let mut heart = Heart {
        pings_sent: 0,
        last_answer: Instant::now(),
    };
    loop {
        let event = tokio::select! {
            frame = conn.feed.recv() => Event::Feed(frame),
            message = conn.messages.recv() => Event::Message(message),
            () = conn.slot.ended() => return End::Close(CloseCode::Policy, LOGGED_OUT),
            () = beat.heard() => Event::Beat,
        };
        // Boxed: what an event leads to (a write with its timer, a post) is the largest
        // wait of the loop, and the task of every idle socket would be sized for it. One
        // allocation per wake-up, not per frame.
        if let Err(end) = Box::pin(handle(conn, event, &mut heart)).await {
            return end;
        }
    }
}

/// What woke a socket's loop.
enum Event {
    Feed(Result<Frame, RecvError>),
    Message(Option<Result<AggregatedMessage, ProtocolError>>),
    /// Its phase of the heartbeat.
    Beat,
}

/// The heartbeat's state. A client proves it reads by answering our latest ping with its
/// payload; anything else it sends (pings, unasked pongs, posts) proves only that it
/// writes.
struct Heart {
    pings_sent: u64,
    last_answer: Instant,
}

async fn handle(conn: &mut SocketConnection, event: Event, heart: &mut Heart) -> Result<(), End> {
    let message = match event {
        Event::Feed(frame) => {
            let first = match frame {
                Ok(frame) => frame,
                Err(RecvError::Lagged(_)) => return Err(End::Close(CloseCode::Again, TOO_SLOW)),
                Err(RecvError::Closed) => {
                    return Err(End::Close(CloseCode::Away, "server shutting down"))
                }
            };
            let count = write_waiting(conn, first).await?;
            conn.state.metrics.delivered.fetch_add(count, Relaxed);
            return Ok(());
        }
        Event::Beat => {
            if heart.last_answer.elapsed() > conn.state.websocket.ping_interval * 2 {
                // Not reading (or gone without a word): a close frame would not be read
                // either.
                return Err(End::Stalled);
            }
            heart.pings_sent += 1;
            let deadline = conn.write_deadline();
            return control(conn.session.ping(&heart.pings_sent.to_be_bytes()), deadline).await;
        }
        Event::Message(message) => message,
    };
    match message {
        None | Some(Ok(AggregatedMessage::Close(_))) => Err(End::ByClient),
        Some(Ok(AggregatedMessage::Text(text))) => {
            // Boxed: a post's future is far larger than a write's, which every frame from
            // the feed allocates.
            match Box::pin(handle_post(conn, &text)).await {
                Some(end) => Err(end),
                None => Ok(()),
            }
        }
        Some(Ok(AggregatedMessage::Binary(_))) => Err(End::Close(
            CloseCode::Unsupported,
            "binary frames are not supported",
        )),
        Some(Ok(AggregatedMessage::Ping(payload))) => {
            // Bounded like every write: a client that floods pings and never reads fills
            // the queue, and then this gives up.
            let deadline = conn.write_deadline();
            control(conn.session.pong(&payload), deadline).await
        }
        Some(Ok(AggregatedMessage::Pong(payload))) => {
            if payload[..] == heart.pings_sent.to_be_bytes() {
                heart.last_answer = Instant::now();
            }
            Ok(())
        }
        Some(Err(ProtocolError::Overflow)) => Err(End::Close(CloseCode::Size, "message too big")),
        // A frame announced over the limit (see `frame_limit`).
        Some(Err(ProtocolError::Io(e))) if frame_limit::refused(&e) => {
            Err(End::Close(CloseCode::Size, "message too big"))
        }
        // actix-http 3.20 reports reserved bits as the same `InvalidData` as bad UTF-8 (its
        // `InvalidReservedBits` awaits a major release); only its message tells them apart.
        // It is a protocol error, not bad text.
        Some(Err(ProtocolError::Io(e))) if e.to_string().contains("reserved bits") => {
            Err(End::Close(
                CloseCode::Protocol,
                "reserved bits set without an extension",
            ))
        }
        Some(Err(ProtocolError::Io(e))) if e.kind() == std::io::ErrorKind::InvalidData => {
            Err(End::Close(CloseCode::Invalid, "text is not valid UTF-8"))
        }
        // actix-ws 0.4 reports fragments over `max_continuation_size` as this plain I/O
        // error rather than `Overflow`; it is the same offence.
        Some(Err(ProtocolError::Io(e))) if e.to_string().contains("maximum continuation size") => {
            Err(End::Close(CloseCode::Size, "message too big"))
        }
        Some(Err(_)) => Err(End::Close(CloseCode::Protocol, "protocol error")),
    }
}

impl SocketConnection {
    /// How long a write may wait: a client that takes nothing for two ping intervals is
    /// not reading.
    fn write_deadline(&self) -> Duration {
        WRITE_TIMEOUT.min(self.state.websocket.ping_interval * 2)
    }
}

/// Sends a control frame (ping or pong) within `deadline`: a closed session means the
/// client went, a missed deadline that it is not reading.
async fn control(
    send: impl std::future::Future<Output = Result<(), actix_ws::Closed>>,
    deadline: Duration,
) -> Result<(), End> {
    match tokio::time::timeout(deadline, send).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(_)) => Err(End::ByClient),
        Err(_) => Err(End::Stalled),
    }
}

/// Writes one frame; false when the client has not taken it in time (or is gone).
async fn write(session: &mut Session, frame: Frame, deadline: Duration) -> bool {
    matches!(
        tokio::time::timeout(deadline, session.text(frame)).await,
        Ok(Ok(()))
    )
}

/// Writes `first` and whatever else is already waiting in the feed (up to
/// [`WRITE_BATCH`]) before yielding: the frames queue up behind each other and leave in one
/// write to the socket. Returns how many were written.
async fn write_waiting(conn: &mut SocketConnection, first: Frame) -> Result<u64, End> {
    let (backlog, deadline) = (conn.state.websocket.backlog, conn.write_deadline());
    let mut next = Some(first);
    let mut count: u64 = 0;
    while let Some(frame) = next.take() {
        write_from_feed(&mut conn.session, frame, &conn.feed, backlog, deadline).await?;
        count += 1;
        if count < WRITE_BATCH {
            next = match conn.feed.try_recv() {
                Ok(frame) => Some(frame),
                Err(TryRecvError::Lagged(_)) => return Err(End::Close(CloseCode::Again, TOO_SLOW)),
                Err(TryRecvError::Empty | TryRecvError::Closed) => None,
            };
        }
    }
    Ok(count)
}

/// Writes a frame from the feed. While the client is not taking it, the feed keeps
/// filling; once the client is a whole backlog behind it is too slow, and waiting out
/// the write timeout would only hold its buffers longer. One timer does both watches (it
/// is part of every idle socket's task, whose size is its largest wait).
async fn write_from_feed(
    session: &mut Session,
    frame: Frame,
    feed: &tokio::sync::broadcast::Receiver<Frame>,
    backlog: usize,
    deadline: Duration,
) -> Result<(), End> {
    let give_up = tokio::time::Instant::now() + deadline;
    let send = session.text(frame);
    tokio::pin!(send);
    loop {
        tokio::select! {
            // The write first: it is almost always ready at once, and then the timer is
            // never polled, so none is armed on the common path.
            biased;
            sent = &mut send => return if sent.is_ok() { Ok(()) } else { Err(End::Stalled) },
            () = tokio::time::sleep(LAG_CHECK) => {
                if feed.len() >= backlog {
                    return Err(End::Close(CloseCode::Again, TOO_SLOW));
                }
                if tokio::time::Instant::now() >= give_up {
                    return Err(End::Stalled);
                }
            }
        }
    }
}

/// Handles a post frame. Bad frames get an error frame; a bad `_xsrf` ends the socket.
async fn handle_post(conn: &mut SocketConnection, text: &str) -> Option<End> {
    let post: PostFrame = match serde_json::from_str(text) {
        Ok(post) => post,
        Err(_) => {
            let expected = r#"expected {"body": "...", "_xsrf": "...", "nonce": "..."}"#;
            return reply_error(conn, expected, None).await;
        }
    };
    if post
        .nonce
        .as_ref()
        .is_some_and(|n| n.chars().count() > PostKey::MAX_CHARS)
    {
        return reply_error(conn, "nonce must be at most 64 characters", None).await;
    }
    let nonce = post.nonce.as_deref();
    let state = &conn.state;
    if let Err(error) = state.xsrf.check_token(
        &conn.login.id.as_str(),
        conn.xsrf_cookie.as_ref(),
        post.xsrf.as_deref(),
    ) {
        tracing::info!(user = %conn.login.name, %error, "socket post refused");
        return Some(End::Close(CloseCode::Policy, "missing or bad _xsrf"));
    }
    // The nonce is the post's key: a resend of an acknowledged post is acknowledged again.
    let key = nonce.map(PostKey::from_nonce);
    let posted = state
        .room
        .post(
            &conn.login,
            &conn.address.to_string(),
            &post.body,
            key.as_ref(),
        )
        .await;
    match posted {
        // The sender gets its own message through the feed, like everyone else; with a
        // nonce it is also told, alone, that this post is in.
        Ok(entry) => match nonce {
            Some(nonce) => {
                let id = entry.message.id.to_string();
                let ack = serde_json::to_string(&AckFrame {
                    ack: nonce,
                    id: &id,
                });
                reply(conn, ack.unwrap_or_default()).await
            }
            None => None,
        },
        Err(AppError::ShuttingDown) => Some(End::Close(CloseCode::Away, "server shutting down")),
        Err(error) => reply_error(conn, &error.to_string(), nonce).await,
    }
}

async fn reply_error(conn: &mut SocketConnection, error: &str, nonce: Option<&str>) -> Option<End> {
    let frame = serde_json::to_string(&ErrorFrame { error, nonce })
        .unwrap_or_else(|_| r#"{"error":"bad frame"}"#.to_owned());
    reply(conn, frame).await
}

/// A frame for this socket alone.
async fn reply(conn: &mut SocketConnection, frame: String) -> Option<End> {
    let deadline = conn.write_deadline();
    if write(&mut conn.session, frame.into(), deadline).await {
        None
    } else {
        Some(End::Stalled)
    }
}
