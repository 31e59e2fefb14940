//! Each login's open WebSockets and held long polls on this instance: capped together, so
//! one login cannot hold an unbounded share of the server's connections, and its sockets
//! closable, so a logout ends them (per instance: each process counts its own).

use std::collections::HashMap;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, Mutex};

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
    /// Set to true when the login is ended (logout): every socket of it closes.
    ended: tokio::sync::watch::Sender<bool>,
}

/// A socket's place: counted per login and in the metrics until dropped.
pub struct SocketSlot {
    slot: PollSlot,
    /// Turns true when the login is ended.
    ended: tokio::sync::watch::Receiver<bool>,
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
        let ended = self.take(login_id)?;
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
        self.take(login_id)?;
        Ok(PollSlot {
            limits: self.clone(),
            login_id: login_id.clone(),
        })
    }

    /// Counts one more connection of `login_id`, if it is under the cap.
    fn take(&self, login_id: &LoginId) -> Result<tokio::sync::watch::Receiver<bool>, AppError> {
        let mut open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        let sockets = open
            .entry(login_id.clone())
            .or_insert_with(|| LoginSockets {
                count: 0,
                ended: tokio::sync::watch::Sender::new(false),
            });
        if sockets.count >= self.per_login {
            return Err(AppError::TooManyConnections);
        }
        sockets.count += 1;
        Ok(sockets.ended.subscribe())
    }

    /// Closes every socket of `logins` here (1008).
    pub fn end(&self, logins: &[LoginId]) {
        let open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        for id in logins {
            if let Some(sockets) = open.get(id) {
                sockets.ended.send_replace(true);
            }
        }
    }
}

impl SocketSlot {
    /// Whether the login has been ended (say, between its upgrade's check and now).
    pub fn is_ended(&mut self) -> bool {
        *self.ended.borrow_and_update()
    }

    /// Resolves when the login is ended; pending forever otherwise.
    pub async fn ended(&mut self) {
        if self.ended.wait_for(|ended| *ended).await.is_err() {
            std::future::pending::<()>().await;
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
