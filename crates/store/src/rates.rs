//! The port for rate windows: counts of operations in fixed, numbered time windows, shared by
//! the nodes of a hub so that throttling holds across them (the limiter is `hub::throttle`).

use async_trait::async_trait;

use crate::Result;

/// What one node adds to a key's count in one window.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WindowCount {
    /// What is counted, e.g. `d2c/device-1` (opaque to the store).
    pub key: String,
    /// The window's number (the limiter uses Unix seconds).
    pub window: u64,
    /// How many to add (0 only reads the total).
    pub count: u64,
}

/// Counts of operations per key and window, added to by every node.
#[async_trait]
pub trait RateWindows: Send + Sync + std::fmt::Debug {
    /// Adds each count to its key's count in its window, all in one write, and returns each
    /// key's total in that window after the addition (every node's), in the order given.
    async fn add_to_windows(&self, counts: Vec<WindowCount>) -> Result<Vec<u64>>;
    /// Forgets the counts of every window numbered below `window`; returns how many rows went.
    async fn forget_windows_before(&self, window: u64) -> Result<u64>;
}
