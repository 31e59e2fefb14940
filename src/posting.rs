//! Posting a message, the same way from every transport: clean-up and limits, the rate
//! limit, rendering, then the hub. Only the way the result is answered differs.

use std::sync::Arc;
use std::time::Instant;

use crate::auth::Login;
use crate::domain::MessageBody;
use crate::error::AppError;
use crate::hub::{AppendError, Draft, Entry, HubHandle};
use crate::rate::RateLimiter;

/// What a post needs, and nothing more; cheap to clone into every socket.
#[derive(Clone)]
pub struct Poster {
    hub: HubHandle,
    rate: Arc<RateLimiter>,
    max_chars: usize,
}

impl Poster {
    pub fn new(hub: HubHandle, rate: Arc<RateLimiter>, max_chars: usize) -> Self {
        Self {
            hub,
            rate,
            max_chars,
        }
    }

    /// Posts `raw_body` as `login`; answers once the message is in the room.
    pub async fn post(&self, login: &Login, raw_body: &str) -> Result<Arc<Entry>, AppError> {
        let body = MessageBody::parse(raw_body, self.max_chars)?;
        // Checked after validation, so a refused message costs no rate.
        self.rate
            .check(login.id.as_str(), Instant::now())
            .map_err(|wait| AppError::RateLimited {
                retry_after_secs: wait.as_secs_f64().ceil().max(1.0) as u64,
            })?;
        let draft = Draft {
            from: login.name.clone(),
            body,
        };
        let entry = self.hub.append(draft).await.map_err(|e| match e {
            AppendError::Closed(closed) => AppError::from(closed),
            AppendError::Render(render) => AppError::internal(render),
        })?;
        tracing::debug!(user = %login.name, id = %entry.message.id, "message posted");
        Ok(entry)
    }
}
