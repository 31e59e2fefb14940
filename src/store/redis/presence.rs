//! Presence across instances (`presence.lua`): each instance holds the logins connected to
//! it and beats once a second; a login leaves when its last hold is released and the grace
//! is over, or at once on logout; an instance that stops beating is dead and its holds are
//! released. Time in which no instance reached Redis does not count, so an outage is no
//! transition. The same script folds the notices: at most one `join` and one `leave` entry
//! per [`FOLD_PERIOD`] across every instance.
//!
//! Changes this instance could not send (Redis away) wait in `pending` and go with the next
//! call that gets through; sending one twice changes nothing.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use futures_core::future::BoxFuture;
use redis::aio::ConnectionManager;
use redis::{RedisError, Script};

use super::Shared;
use crate::auth::LoginId;
use crate::domain::{Epoch, UserName};
use crate::store::{OnlineRows, PresenceRegistry, PresenceSettings, FOLD_PERIOD, FOLD_PERIOD_MAX};

/// How long an instance's beat lasts: one that has not beaten for this long is dead.
/// With the grace after it, its logins leave within the grace + 10 s of its death.
const BEAT_TTL: Duration = Duration::from_secs(8);
/// A gap longer than this between two presence calls (from any instance) is an outage:
/// its time does not count.
const OUTAGE: Duration = Duration::from_secs(2);
/// Redis's clock is read when the script runs, a little after the tick that sent it, so
/// two ticks a period apart may read a little less than a period apart.
const FOLD_SLACK: Duration = Duration::from_millis(50);
/// Changes sent in one call at most.
const CHANGES_PER_CALL: usize = 1000;

#[derive(Debug, Clone, PartialEq, Eq)]
enum Change {
    Connected(UserName),
    Released,
    LoggedOut,
}

pub(super) struct RedisPresence {
    shared: Arc<Shared>,
    writer: ConnectionManager,
    script: Script,
    list_script: Script,
    settings: PresenceSettings,
    /// Changes not sent yet, in the order they came; a login's newest change replaces its
    /// older one in place (`index`).
    pending: Vec<(LoginId, Change)>,
    index: HashMap<LoginId, usize>,
    /// Redis did not know this instance (it lost its data, or took it for dead): every
    /// login connected here is sent again at the next tick.
    resend_all: bool,
}

impl RedisPresence {
    pub(super) fn new(
        shared: Arc<Shared>,
        writer: ConnectionManager,
        settings: PresenceSettings,
    ) -> Self {
        Self {
            shared,
            writer,
            script: Script::new(include_str!("presence.lua")),
            list_script: Script::new(LIST),
            settings,
            pending: Vec::new(),
            index: HashMap::new(),
            resend_all: false,
        }
    }

    fn change(&mut self, login: LoginId, change: Change) {
        match self.index.get(&login) {
            Some(&at) => self.pending[at].1 = change,
            None => {
                self.index.insert(login, self.pending.len());
                self.pending.push((login, change));
            }
        }
    }

    /// Sends the pending changes (none: just the beat), in calls of at most
    /// [`CHANGES_PER_CALL`]; what does not get through stays pending.
    async fn send(&mut self) {
        loop {
            let n = self.pending.len().min(CHANGES_PER_CALL);
            match self.call(&self.pending[..n]).await {
                Ok(known) => {
                    self.resend_all |= !known;
                    self.pending.drain(..n);
                    self.index = (self.pending.iter().enumerate())
                        .map(|(at, (login, _))| (*login, at))
                        .collect();
                }
                Err(error) => {
                    // The log's follower reports outages; presence tries again next tick.
                    tracing::debug!(%error, pending = self.pending.len(), "presence not sent");
                    return;
                }
            }
            if self.pending.is_empty() {
                return;
            }
        }
    }

    /// One call of the script; `Ok(false)` if Redis did not know this instance.
    async fn call(&self, changes: &[(LoginId, Change)]) -> Result<bool, RedisError> {
        let keys = &self.shared.keys;
        let mut invocation = self.script.prepare_invoke();
        for key in [
            &keys.who,
            &keys.since,
            &keys.held,
            &keys.holders,
            &keys.instances,
            &keys.presence_clock,
            &keys.fold,
            &keys.fold_joins,
            &keys.fold_leaves,
            &keys.log,
            &keys.epoch,
            &keys.revoked,
            &keys.fold_pending,
        ] {
            invocation.key(key);
        }
        invocation
            .arg(&self.shared.instance)
            .arg(self.settings.leave_grace.as_millis() as u64)
            .arg(BEAT_TTL.as_millis() as u64)
            .arg(if self.settings.notices { "1" } else { "0" })
            .arg(self.shared.cache_size)
            .arg(Epoch::random().as_str())
            .arg(FOLD_PERIOD.as_millis() as u64)
            .arg(OUTAGE.as_millis() as u64)
            .arg(FOLD_PERIOD_MAX.as_millis() as u64)
            .arg(FOLD_SLACK.as_millis() as u64);
        for (login, change) in changes {
            let (op, name) = match change {
                Change::Connected(name) => ("c", name.as_str()),
                Change::Released => ("r", ""),
                Change::LoggedOut => ("x", ""),
            };
            invocation.arg(op).arg(&*login.as_str()).arg(name);
        }
        let mut writer = self.writer.clone();
        let known: u8 = invocation.invoke_async(&mut writer).await?;
        Ok(known == 1)
    }
}

/// The first ARGV[1] logins, oldest first, as "since|name", after how many there are.
const LIST: &str = r"
local out = {redis.call('ZCARD', KEYS[1])}
local limit = tonumber(ARGV[1])
if limit > 0 then
  for _, login in ipairs(redis.call('ZRANGE', KEYS[1], 0, limit - 1)) do
    out[#out + 1] = redis.call('HGET', KEYS[2], login) or ''
  end
end
return out
";

impl PresenceRegistry for RedisPresence {
    fn connected(&mut self, logins: Vec<(LoginId, UserName)>) -> BoxFuture<'_, ()> {
        for (login, name) in logins {
            self.change(login, Change::Connected(name));
        }
        // At once, so the join is not a tick late.
        Box::pin(self.send())
    }

    fn gone(&mut self, login: &LoginId) {
        self.change(*login, Change::Released);
    }

    fn logged_out(&mut self, login: LoginId) -> BoxFuture<'_, ()> {
        self.change(login, Change::LoggedOut);
        Box::pin(self.send())
    }

    fn tick<'a>(
        &'a mut self,
        _at: tokio::time::Instant,
        here: &'a [(LoginId, UserName)],
    ) -> BoxFuture<'a, ()> {
        Box::pin(async move {
            // Also the beat, the sweep and the notices due.
            self.send().await;
            if std::mem::take(&mut self.resend_all) {
                // At once: holds Redis released for this live instance are taken back
                // within the grace, so nobody leaves.
                tracing::info!(
                    logins = here.len(),
                    "presence: Redis did not know this instance; sending its logins again"
                );
                for (login, name) in here {
                    if !self.index.contains_key(login) {
                        self.change(*login, Change::Connected(name.clone()));
                    }
                }
                self.send().await;
            }
        })
    }

    fn list(&mut self, limit: usize) -> BoxFuture<'_, Option<OnlineRows>> {
        Box::pin(async move {
            let keys = &self.shared.keys;
            let mut writer = self.writer.clone();
            let answer: Result<Vec<redis::Value>, RedisError> = self
                .list_script
                .key(&keys.since)
                .key(&keys.who)
                .arg(limit)
                .invoke_async(&mut writer)
                .await;
            let answer = match answer {
                Ok(answer) => answer,
                Err(error) => {
                    tracing::debug!(%error, "presence not read");
                    return None;
                }
            };
            let mut values = answer.into_iter();
            let count = match values.next() {
                Some(redis::Value::Int(n)) => usize::try_from(n).unwrap_or(0),
                _ => 0,
            };
            let rows = values
                .filter_map(|value| {
                    let who: String = redis::from_redis_value(value).ok()?;
                    let (since, name) = who.split_once('|')?;
                    Some((since.parse().ok()?, UserName::parse(name).ok()?))
                })
                .collect();
            Some((count, rows))
        })
    }
}
