//! Observers: what the clients saw, turned into counts. Sequence tracking per receiver, latency
//! histograms, churn events, the loss analysis run after each iteration, and the HTTP workers'
//! tallies per route.

pub mod analysis;
pub mod clock;
pub mod cpu;
pub mod events;
pub mod http;
pub mod latency;
pub mod ranges;
pub mod sample;
pub mod sample_table;
pub mod sampled_sites;
pub mod sampler;
pub mod saturation;
pub mod sites;
pub mod symbols;
pub mod timeline;
pub mod tracker;
