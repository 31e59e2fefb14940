//! chatdemo: Tornado's chat demo ported to actix-web. One room, a 200-message cache with
//! cursors, signed-cookie users, XSRF tokens, long polling and a WebSocket on the same hub.

pub mod assets;
pub mod auth;
pub mod config;
pub mod connections;
pub mod domain;
pub mod error;
pub mod form;
pub mod forwarded;
pub mod frame_limit;
pub mod heap;
pub mod heartbeat;
pub mod hub;
pub mod linkify;
pub mod logins;
pub mod metrics;
pub mod peer;
pub mod presence;
pub mod rate;
pub mod room;
pub mod routes;
pub mod slots;
pub mod socket;
pub mod startup;
pub mod state;
pub mod store;
pub mod telemetry;
pub mod templates;
pub mod xsrf;

pub use config::Settings;
pub use startup::{Application, ShutdownHandle};
