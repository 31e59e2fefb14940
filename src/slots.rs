//! Each login's open WebSockets on this instance: capped, so one client cannot hold an
//! unbounded share of the server, and closable, so a logout ends them (per instance: each
//! process counts its own).

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

/// One login's open sockets here.
struct LoginSockets {
    count: usize,
    /// Set to true when the login is ended (logout): every socket of it closes.
    ended: tokio::sync::watch::Sender<bool>,
}

/// A socket's place: counted per login and in the metrics until dropped.
pub struct SocketSlot {
    limits: SocketLimits,
    login_id: LoginId,
    /// Turns true when the login is ended.
    ended: tokio::sync::watch::Receiver<bool>,
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
        let mut open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        let sockets = open
            .entry(login_id.clone())
            .or_insert_with(|| LoginSockets {
                count: 0,
                ended: tokio::sync::watch::Sender::new(false),
            });
        if sockets.count >= self.per_login {
            return Err(AppError::TooManySockets);
        }
        sockets.count += 1;
        self.metrics.sockets.fetch_add(1, Relaxed);
        Ok(SocketSlot {
            limits: self.clone(),
            login_id: login_id.clone(),
            ended: sockets.ended.subscribe(),
        })
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
        self.limits.metrics.sockets.fetch_sub(1, Relaxed);
        let mut open = self.limits.open.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(sockets) = open.get_mut(&self.login_id) {
            sockets.count -= 1;
            if sockets.count == 0 {
                open.remove(&self.login_id);
            }
        }
    }
}
