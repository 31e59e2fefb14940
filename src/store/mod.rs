//! Where the room's log lives. `Memory`: in this process, the hub itself gives ids (the
//! embedded default). `Redis`: one stream shared by every instance, which gives the ids;
//! each instance's reader feeds its own hub. The poster and the routes see only `Store`.

mod redis;

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::auth::{Login, LoginId};
use crate::error::AppError;
use crate::hub::{AppendError, Draft, Entry, HubHandle};
use crate::rate::RateLimiter;
pub use redis::{
    ReaderPause, RedisPresence, RedisRevocations, RedisSettings, RedisStore, StoreStartError,
};

/// Why a post was not stored.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("the room is shut down")]
    Closed,
    #[error("too many messages; wait {0:?}")]
    RateLimited(Duration),
    /// The store cannot be reached (or did not answer in time); nothing was acknowledged.
    #[error("the message store is unavailable")]
    Unavailable,
    #[error("internal error: {0}")]
    Internal(String),
}

impl From<StoreError> for AppError {
    fn from(error: StoreError) -> Self {
        match error {
            StoreError::Closed => Self::ShuttingDown,
            StoreError::Unavailable => Self::StoreUnavailable,
            StoreError::RateLimited(wait) => Self::rate_limited(wait),
            StoreError::Internal(cause) => Self::Internal(cause.into()),
        }
    }
}

impl From<AppendError> for StoreError {
    fn from(error: AppendError) -> Self {
        match error {
            AppendError::Closed(_) => Self::Closed,
            AppendError::Render(render) => Self::Internal(render.to_string()),
        }
    }
}

pub enum Store {
    /// The hub is the store; the rate limit is this process's.
    Memory {
        hub: HubHandle,
        /// Per login.
        rate: RateLimiter,
        /// Per client address, across its logins.
        address_rate: RateLimiter,
    },
    Redis(RedisStore),
}

impl Store {
    /// The Redis reader's pause switch; `None` for the in-memory room.
    pub fn reader_pause(&self) -> Option<ReaderPause> {
        match self {
            Self::Memory { .. } => None,
            Self::Redis(redis) => Some(redis.reader_pause()),
        }
    }

    /// Records a logout for every instance; the in-memory room has only this one, whose
    /// `Revocations` the caller updates.
    pub async fn revoke(&self, id: &LoginId, until: u64) -> Result<(), StoreError> {
        match self {
            Self::Memory { .. } => Ok(()),
            Self::Redis(redis) => redis.revocations().revoke(id, until).await,
        }
    }

    /// Stores a post of `login`'s from `address` (after both rate checks) and returns it
    /// once this instance's room has it.
    pub async fn append(
        &self,
        login: &Login,
        address: &str,
        draft: Draft,
    ) -> Result<Arc<Entry>, StoreError> {
        match self {
            Self::Memory {
                hub,
                rate,
                address_rate,
            } => {
                let now = Instant::now();
                RateLimiter::check_both((rate, login.id.as_str()), (address_rate, address), now)
                    .map_err(StoreError::RateLimited)?;
                Ok(hub.append(draft).await?)
            }
            // Boxed: the Redis post is a large future, and every socket's task holds a
            // post's future inline; unboxed it cost each socket about 1 KiB, memory
            // store or not.
            Self::Redis(redis) => Box::pin(redis.append(login, address, draft)).await,
        }
    }
}
