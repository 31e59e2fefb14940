//! Integration tests over real HTTP against the real application on port 0.

mod helpers;

mod bad_input;
mod delivery;
mod login;
mod page;
mod polling;
mod posting;
mod process;
mod socket;
mod xsrf;
