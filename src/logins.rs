//! This instance's logins: their open sockets (capped per login), and logout, the whole of
//! it: recording that a login has ended (for every instance, in the backend's list),
//! refusing its cookie here from then on, closing its sockets here, and taking it out of
//! who is online at once. Logouts other
//! instances record reach this one through the list's follower, which this piece starts
//! and which does the same last two steps.

use std::sync::Arc;

use crate::auth::{Login, LoginId, Revocations};
use crate::error::AppError;
use crate::presence::Presence;
use crate::slots::{PollSlot, SocketLimits, SocketSlot};
use crate::store::{LogoutList, StoreError};

pub struct Logins {
    list: Arc<dyn LogoutList>,
    /// What the login reader consults on every request.
    ended: Arc<Revocations>,
    presence: Presence,
    sockets: SocketLimits,
    /// How long a login lasts, in days: a logout is kept that long.
    max_age_days: u32,
}

impl Logins {
    /// Applies the logins already ended (`initial`), then follows the list for the ones
    /// other instances end from now on (on the current Tokio runtime).
    pub fn start(
        list: Arc<dyn LogoutList>,
        initial: Vec<(LoginId, u64)>,
        ended: Arc<Revocations>,
        presence: Presence,
        sockets: SocketLimits,
        max_age_days: u32,
    ) -> Arc<Self> {
        let logouts = Arc::new(Self {
            list,
            ended,
            presence,
            sockets,
            max_age_days,
        });
        logouts.apply(initial);
        if let Some(mut source) = logouts.list.follow() {
            // Weak: the follower ends with the server.
            let this = Arc::downgrade(&logouts);
            tokio::spawn(async move {
                loop {
                    let ended = source.next().await;
                    let Some(this) = this.upgrade() else { return };
                    this.apply(ended);
                }
            });
        }
        logouts
    }

    /// Ends `login` everywhere: recorded for every instance first (if that fails, nothing
    /// changes and the user is told to try again, rather than believing a copy of the
    /// cookie is dead), then here.
    pub async fn log_out(&self, login: &Login) -> Result<(), StoreError> {
        let until = login.expires_at(self.max_age_days);
        self.list.record(&login.id, until).await?;
        self.apply(vec![(login.id, until)]);
        // A logout is a leave at once (this instance tells the registry, for all of them).
        self.presence.log_out(&login.id);
        Ok(())
    }

    /// A place for a socket of `login`, until the slot is dropped; 429 past the cap.
    pub fn open_socket(&self, login: &LoginId) -> Result<SocketSlot, AppError> {
        self.sockets.acquire(login)
    }

    /// A place for a held poll of `login`, counted with its sockets (429 past the cap).
    pub fn hold_poll(&self, login: &LoginId) -> Result<PollSlot, AppError> {
        self.sockets.acquire_poll(login)
    }

    /// Refuses these logins' cookies here and closes their sockets.
    fn apply(&self, ended: Vec<(LoginId, u64)>) {
        let new = self.ended.apply(ended);
        if !new.is_empty() {
            self.sockets.end(&new);
        }
    }
}
