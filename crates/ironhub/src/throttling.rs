//! Starts the node's limiter from the `[throttling]` table: one [`Throttle`] for the hub and
//! the DPS, counting through the store, with its reconciliation running in the background.

use std::sync::Arc;

use ironhub_hub::throttle::{Throttle, ThrottleSettings};
use ironhub_store::RateWindows;

/// The limiter, or `None` when nothing is throttled.
pub(crate) fn start(
    settings: Option<&ThrottleSettings>,
    windows: Arc<dyn RateWindows>,
) -> Option<Arc<Throttle>> {
    let settings = settings?.clone();
    tracing::info!(
        sync_interval_ms = settings.sync_interval().as_millis(),
        "throttling on"
    );
    let throttle = Arc::new(Throttle::new(settings, windows));
    // The task ends when the limiter is dropped with the server.
    drop(throttle.spawn_reconciler());
    Some(throttle)
}
