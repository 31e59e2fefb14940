//! Integration tests over real HTTP against the real application on port 0.

// Test code: helpers unwrap (a panic is the failure report), and their `pub` is for the
// sibling test modules, not for users of a library.
#![allow(clippy::unwrap_used, unreachable_pub)]

mod helpers;

mod bad_input;
mod delivery;
mod deployment;
mod faults;
mod hostile;
mod limits;
mod login;
mod lost_answer;
mod modules;
mod nginx;
mod page;
mod polling;
mod posting;
mod presence;
mod process;
mod redis_server;
mod redis_tls;
mod scale_out;
mod socket;
mod xsrf;
