//! Each login's open WebSockets and held long polls on this instance: capped together, so
//! one login cannot hold an unbounded share of the server's connections, and its sockets
//! closable, so a logout ends them (per instance: each process counts its own).

use std::collections::HashMap;
use std::sync::atomic::AtomicBool;
use std::sync::atomic::Ordering::{Relaxed, SeqCst};
use std::sync::{Arc, Mutex};

use tokio::sync::Notify;

use crate::auth::LoginId;
use crate::error::AppError;
use crate::metrics::Metrics;

/// The sockets of every login here.
#[derive(Clone)]
pub struct SocketLimits {
    per_login: usize,
    open: Arc<Mutex<HashMap<LoginId, LoginSockets>>>,
    metrics: Arc<Metrics>,
}

/// One login's open sockets and held polls here.
struct LoginSockets {
    /// Sockets and held polls together.
    count: usize,
    /// Set when the login is ended (logout): every socket of it closes. Made for the first
    /// socket: a login that only polls (an entry made and removed per poll) needs none.
    ended: Option<Arc<Ending>>,
}

/// A login's end, as its sockets wait for it: a flag and a wake-up, about 60 bytes (a
/// `watch` channel is over 400, and every idle socket kept one).
#[derive(Default)]
struct Ending {
    ended: AtomicBool,
    notify: Notify,
}

/// A socket's place: counted per login and in the metrics until dropped.
pub struct SocketSlot {
    slot: PollSlot,
    /// Set when the login is ended.
    ended: Arc<Ending>,
}

/// A held poll's place: counted per login until dropped.
pub struct PollSlot {
    limits: SocketLimits,
    login_id: LoginId,
}

impl SocketLimits {
    pub fn new(per_login: usize, metrics: Arc<Metrics>) -> Self {
        Self {
            per_login,
            open: Arc::default(),
            metrics,
        }
    }

    pub fn acquire(&self, login_id: &LoginId) -> Result<SocketSlot, AppError> {
        let ended = self.take(login_id, |sockets| {
            sockets.ended.get_or_insert_default().clone()
        })?;
        self.metrics.sockets.fetch_add(1, Relaxed);
        Ok(SocketSlot {
            slot: PollSlot {
                limits: self.clone(),
                login_id: login_id.clone(),
            },
            ended,
        })
    }

    /// A held poll's place among its login's connections.
    pub fn acquire_poll(&self, login_id: &LoginId) -> Result<PollSlot, AppError> {
        self.take(login_id, |_| ())?;
        Ok(PollSlot {
            limits: self.clone(),
            login_id: login_id.clone(),
        })
    }

    /// Counts one more connection of `login_id`, if it is under the cap, and hands its
    /// entry to `then`.
    fn take<T>(
        &self,
        login_id: &LoginId,
        then: impl FnOnce(&mut LoginSockets) -> T,
    ) -> Result<T, AppError> {
        let mut open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        let sockets = open.entry(login_id.clone()).or_insert(LoginSockets {
            count: 0,
            ended: None,
        });
        if sockets.count >= self.per_login {
            return Err(AppError::TooManyConnections);
        }
        sockets.count += 1;
        Ok(then(sockets))
    }

    /// Closes every socket of `logins` here (1008).
    pub fn end(&self, logins: &[LoginId]) {
        let mut open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        for id in logins {
            if let Some(sockets) = open.get_mut(id) {
                // Made here if only polls are held, so a socket that comes after is
                // ended too (as long as the entry lives).
                let ending = sockets.ended.get_or_insert_default();
                ending.ended.store(true, SeqCst);
                ending.notify.notify_waiters();
            }
        }
    }
}

impl SocketSlot {
    /// Whether the login has been ended (say, between its upgrade's check and now).
    pub fn is_ended(&self) -> bool {
        self.ended.ended.load(SeqCst)
    }

    /// Resolves when the login is ended; pending forever otherwise.
    pub async fn ended(&self) {
        loop {
            // Made before the flag is read: `notify_waiters` wakes every `Notified` that
            // exists when it is called, polled or not, so an end between the two is seen.
            let notified = self.ended.notify.notified();
            if self.is_ended() {
                return;
            }
            notified.await;
        }
    }
}

impl Drop for SocketSlot {
    fn drop(&mut self) {
        self.slot.limits.metrics.sockets.fetch_sub(1, Relaxed);
    }
}

impl Drop for PollSlot {
    fn drop(&mut self) {
        let mut open = self.limits.open.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(sockets) = open.get_mut(&self.login_id) {
            sockets.count -= 1;
            if sockets.count == 0 {
                open.remove(&self.login_id);
            }
        }
    }
}
