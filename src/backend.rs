//! Builds the channel layer a scenario names, wrapped in its fault switches when any are on.

use std::sync::Arc;

use crate::layer::{ChannelLayer, FaultyLayer, MemoryLayer};
use crate::scenario::{BackendKind, Scenario};

/// A built backend and what to report about it.
pub struct Backend {
    /// The layer every server instance shares.
    pub layer: Arc<dyn ChannelLayer>,
    /// Name and version for the results.
    pub version: String,
}

/// Why a backend could not be built (an infrastructure problem, exit 3).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct BackendError(pub String);

/// Builds the layer for `scenario`.
pub async fn build(scenario: &Scenario) -> Result<Backend, BackendError> {
    let capacity = scenario.server.capacity;
    let (layer, version): (Arc<dyn ChannelLayer>, String) = match scenario.backend.kind {
        BackendKind::Memory => (
            Arc::new(MemoryLayer::new(capacity)),
            format!("in-process (leakrun {})", env!("CARGO_PKG_VERSION")),
        ),
    };
    let faults = &scenario.server.faults;
    let layer: Arc<dyn ChannelLayer> = if faults.drop_one_in.is_some() || faults.keep_membership_on_disconnect {
        Arc::new(FaultyLayer::new(
            layer,
            faults.drop_one_in,
            faults.keep_membership_on_disconnect,
        ))
    } else {
        layer
    };
    Ok(Backend { layer, version })
}
