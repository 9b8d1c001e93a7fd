//! Observers: what the clients saw, turned into counts. Sequence tracking per receiver, latency
//! histograms, churn events, and the loss analysis run after each iteration.

pub mod analysis;
pub mod clock;
pub mod events;
pub mod latency;
pub mod ranges;
pub mod sampler;
pub mod timeline;
pub mod tracker;
