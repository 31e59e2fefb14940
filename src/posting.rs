//! Posting a message, the same way from every transport: clean-up and limits, the rate
//! limit, rendering, then the hub. Only the way the result is answered differs.

use std::sync::Arc;

use crate::auth::Login;
use crate::domain::{Kind, MessageBody};
use crate::error::AppError;
use crate::hub::{Draft, Entry};
use crate::store::Store;

/// What a post needs, and nothing more; cheap to clone into every socket.
#[derive(Clone)]
pub struct Poster {
    store: Arc<Store>,
    max_chars: usize,
}

impl Poster {
    pub fn new(store: Arc<Store>, max_chars: usize) -> Self {
        Self { store, max_chars }
    }

    /// Posts `raw_body` as `login` from the client `address`; answers once the message is
    /// in the room.
    pub async fn post(
        &self,
        login: &Login,
        address: &str,
        raw_body: &str,
    ) -> Result<Arc<Entry>, AppError> {
        let body = MessageBody::parse(raw_body, self.max_chars)?;
        let draft = Draft {
            from: login.name.clone(),
            body,
            kind: Kind::Message,
        };
        // The rate is charged by the store, after validation: a refused message costs none.
        let entry = self.store.append(login, address, draft).await?;
        tracing::debug!(user = %login.name, id = %entry.message.id, "message posted");
        Ok(entry)
    }
}
