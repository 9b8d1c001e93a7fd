//! leakrun: one scenario file per leak or message-loss bug in a WebSocket or HTTP server.
//!
//! A [`scenario`] names a server, rooms and clients; the [`runner`] stands the server up, drives
//! the clients through iterations, and the observers turn what happened into verdicts that land in
//! [`results`].

pub mod address;
pub mod backend;
pub mod cli;
pub mod diff;
pub mod envelope;
pub mod exit;
pub mod heap;
pub mod infra;
pub mod layer;
pub mod load;
pub mod naming;
pub mod observe;
pub mod process;
pub mod report;
pub mod results;
pub mod runner;
pub mod scenario;
pub mod server;
pub mod signals;
pub mod target;
pub mod verdict;
