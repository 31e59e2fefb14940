//! Presence across instances: `P:online`, a sorted set of logins scored by when they expire,
//! and `P:who`, each one's arrival and name. One script per instance and tick
//! (`presence.lua`) sweeps the logins no instance refreshed in time (they leave) and
//! refreshes the ones connected here (new ones join), atomically, so exactly one instance
//! announces each change, and a dead instance's logins simply expire.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use futures_core::future::BoxFuture;
use redis::aio::ConnectionManager;
use redis::{AsyncCommands, RedisError, Script};
use tokio::time::Instant;

use super::Shared;
use crate::auth::LoginId;
use crate::domain::{Epoch, UserName};
use crate::store::{PresenceRegistry, PresenceSettings};

/// How often a login online here is refreshed in Redis.
const REFRESH: Duration = Duration::from_secs(5);

pub(super) struct RedisPresence {
    shared: Arc<Shared>,
    writer: ConnectionManager,
    script: Script,
    settings: PresenceSettings,
    /// Logins connected here, and when each was last refreshed in Redis.
    refreshed: HashMap<LoginId, Instant>,
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
            settings,
            refreshed: HashMap::new(),
        }
    }

    /// How long a refresh keeps a login online: refreshed every [`REFRESH`], it leaves once
    /// it has been gone from every instance for at least the grace.
    fn ttl(&self) -> Duration {
        self.settings.leave_grace + REFRESH + Duration::from_secs(1)
    }

    /// Refreshes `logins` (connected here), sweeps the expired ones, and announces the
    /// changes when notices are on.
    async fn refresh(&self, logins: &[(LoginId, UserName)]) {
        let keys = &self.shared.keys;
        let mut invocation = self.script.prepare_invoke();
        invocation
            .key(&keys.online)
            .key(&keys.who)
            .key(&keys.log)
            .key(&keys.epoch)
            .arg(self.ttl().as_millis() as u64)
            .arg(self.shared.cache_size)
            .arg(if self.settings.notices { "1" } else { "0" })
            .arg(Epoch::random().as_str());
        for (login, name) in logins {
            invocation.arg(login.as_str()).arg(name.as_str());
        }
        let mut writer = self.writer.clone();
        let result: Result<u64, RedisError> = invocation.invoke_async(&mut writer).await;
        if let Err(error) = result {
            // The log's follower reports outages; presence just tries again next tick.
            tracing::debug!(%error, "presence not refreshed");
        }
    }
}

impl PresenceRegistry for RedisPresence {
    fn connected(&mut self, login: LoginId, name: UserName) -> BoxFuture<'_, ()> {
        // Refreshed at once, so the join is not a tick late.
        self.refreshed.insert(login.clone(), Instant::now());
        Box::pin(async move { self.refresh(&[(login, name)]).await })
    }

    /// No longer refreshed here: it expires in Redis unless another instance has it.
    fn gone(&mut self, login: &LoginId) {
        self.refreshed.remove(login);
    }

    fn tick<'a>(&'a mut self, here: &'a [(LoginId, UserName)]) -> BoxFuture<'a, ()> {
        let now = Instant::now();
        let stale: Vec<(LoginId, UserName)> = here
            .iter()
            .filter(|(id, _)| {
                self.refreshed
                    .get(id)
                    .is_none_or(|at| now.duration_since(*at) >= REFRESH)
            })
            .cloned()
            .collect();
        for (id, _) in &stale {
            self.refreshed.insert(id.clone(), now);
        }
        // Also sweeps the logins every instance stopped refreshing.
        Box::pin(async move { self.refresh(&stale).await })
    }

    fn list(&mut self) -> BoxFuture<'_, Vec<(u64, UserName)>> {
        Box::pin(async move {
            let mut writer = self.writer.clone();
            let all: HashMap<String, String> = match writer.hgetall(&self.shared.keys.who).await {
                Ok(all) => all,
                Err(error) => {
                    tracing::debug!(%error, "presence not read");
                    return Vec::new();
                }
            };
            let mut rows: Vec<(u64, UserName)> = all
                .values()
                .filter_map(|who| {
                    let (since, name) = who.split_once('|')?;
                    Some((since.parse().ok()?, UserName::parse(name).ok()?))
                })
                .collect();
            rows.sort_by(|a, b| (a.0, a.1.as_str()).cmp(&(b.0, b.1.as_str())));
            rows
        })
    }
}
