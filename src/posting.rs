//! Posting a message, the same way from every transport: clean-up and limits, the rate
//! limit, rendering, then the hub. Only the way the result is answered differs.

use std::sync::Arc;
use std::time::Instant;

use crate::auth::Login;
use crate::domain::MessageBody;
use crate::error::AppError;
use crate::hub::Entry;
use crate::startup::AppState;
use crate::templates::build_message;

pub async fn post_message(
    state: &AppState,
    login: &Login,
    raw_body: &str,
) -> Result<Arc<Entry>, AppError> {
    let text = MessageBody::parse(raw_body, state.settings.room.max_message_chars)?;
    // Checked after validation, so a refused message costs no rate.
    state
        .rate
        .check(&login.id, Instant::now())
        .map_err(|wait| AppError::RateLimited {
            retry_after_secs: wait.as_secs_f64().ceil().max(1.0) as u64,
        })?;
    let message =
        build_message(&state.templates, &login.name, text.as_str()).map_err(AppError::internal)?;
    let entry = state
        .hub
        .publish(message)
        .await
        .map_err(|_| AppError::ShuttingDown)?;
    tracing::debug!(user = %login.name, id = %entry.message.id, "message posted");
    Ok(entry)
}
