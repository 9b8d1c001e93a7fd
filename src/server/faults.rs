//! The server's own fault switches, beside the channel layer's (`crate::layer::faults`).
//!
//! They exist to prove the leak verdict: a server that keeps a known number of bytes for each closed
//! connection (the verdict must find it and measure it), and one whose connections hold memory
//! only while open (the heap returns to its baseline, the allocator keeps the pages: retention, not
//! a leak). Both are off unless a scenario turns them on.

use std::sync::Mutex;

/// Size of the pieces a held buffer is made of: small enough to come from the allocator's arenas
/// rather than their own mappings, which is what makes freed memory stay resident.
const HOLD_PIECE: usize = 4096;

/// Room reserved up front for leaked blocks, so the list that keeps them does not grow in steps
/// and every closed connection adds exactly `leak_per_connection` live bytes.
const LEAK_SLOTS: usize = 65_536;

/// Fault switches of one server instance.
#[derive(Debug)]
pub struct ServerFaults {
    leak_per_connection: usize,
    hold_per_connection: usize,
    leaked: Mutex<Vec<Box<[u8]>>>,
}

impl ServerFaults {
    /// Every switch off.
    pub fn off() -> Self {
        Self::new(0, 0)
    }

    /// `leak_per_connection` bytes kept for good per closed connection; `hold_per_connection`
    /// bytes held by each open connection and freed when it closes. 0 turns a switch off.
    pub fn new(leak_per_connection: usize, hold_per_connection: usize) -> Self {
        let slots = if leak_per_connection > 0 { LEAK_SLOTS } else { 0 };
        Self {
            leak_per_connection,
            hold_per_connection,
            leaked: Mutex::new(Vec::with_capacity(slots)),
        }
    }

    /// The buffer a new connection holds while it is open (empty when the switch is off). Every
    /// page is written, so it is resident, not just reserved.
    pub fn hold(&self) -> Vec<Box<[u8]>> {
        let pieces = self.hold_per_connection.div_ceil(HOLD_PIECE);
        (0..pieces)
            .map(|i| vec![i as u8 | 1; HOLD_PIECE].into_boxed_slice())
            .collect()
    }

    /// Called once per connection when it has closed: keeps the leaked block, if the switch is on.
    pub fn on_connection_closed(&self) {
        if self.leak_per_connection == 0 {
            return;
        }
        let block = vec![0xA5u8; self.leak_per_connection].into_boxed_slice();
        self.leaked.lock().unwrap_or_else(|p| p.into_inner()).push(block);
    }

    /// Blocks kept so far by the leak switch.
    pub fn leaked_blocks(&self) -> usize {
        self.leaked.lock().unwrap_or_else(|p| p.into_inner()).len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn switches_do_nothing_when_off() {
        let faults = ServerFaults::off();
        assert!(faults.hold().is_empty());
        faults.on_connection_closed();
        assert_eq!(faults.leaked_blocks(), 0);
    }

    #[test]
    fn leak_keeps_one_block_per_closed_connection_and_hold_is_sized() {
        let faults = ServerFaults::new(256, 10_000);
        let held = faults.hold();
        assert_eq!(held.len(), 3);
        assert!(held.iter().all(|piece| piece.len() == HOLD_PIECE && piece[0] != 0));
        for _ in 0..5 {
            faults.on_connection_closed();
        }
        assert_eq!(faults.leaked_blocks(), 5);
    }
}
