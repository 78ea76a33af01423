//! The limit on failed console sign-ins: a client address that failed
//! [`FAILED_SIGN_INS_PER_MINUTE`] times in a minute is refused (429, `Retry-After` until the
//! minute ends) without its key being checked, so a policy key cannot be guessed at speed;
//! other addresses are not affected. Failures are counted through the store's
//! [`RateWindows`] port (the one throttling counts through), so every node of a cluster sees
//! every node's failures at once.
//!
//! A minute's window is numbered by the Unix second at which it ends, in the throttle's own
//! units: the throttle forgets windows a few seconds older than now, which removes a minute's
//! counts shortly after that minute is over and never before.

use std::net::IpAddr;
use std::sync::Arc;

use ironhub_store::{RateWindows, WindowCount};

use crate::{Hub, HubError};

/// Failed sign-ins an address may make in one minute.
pub const FAILED_SIGN_INS_PER_MINUTE: u64 = 5;
const MINUTE: u64 = 60;

/// The failed sign-ins of one address in one minute.
fn key(client: Option<IpAddr>) -> String {
    match client {
        Some(ip) => format!("console-sign-in/{ip}"),
        None => "console-sign-in/unknown".to_owned(),
    }
}

impl Hub {
    /// The same hub, counting failed console sign-ins in `windows` (without it, sign-ins are
    /// not limited).
    pub fn with_rate_windows(mut self, windows: Arc<dyn RateWindows>) -> Self {
        self.rate_windows = Some(windows);
        self
    }

    /// The end of the current minute, in Unix seconds, and the seconds left until then.
    fn sign_in_window(&self) -> (u64, u64) {
        let now = u64::try_from(self.clock.now().timestamp()).unwrap_or_default();
        let end = (now / MINUTE + 1) * MINUTE;
        (end, end - now)
    }

    /// Refuses a sign-in from `client` (`None`: an address not known) that used up its
    /// failures this minute, with IoT Hub's throttling error saying when to come back. A store
    /// that cannot be read does not lock everyone out: the sign-in goes on (and is logged).
    pub async fn admit_sign_in(&self, client: Option<IpAddr>) -> Result<(), HubError> {
        let Some(windows) = &self.rate_windows else {
            return Ok(());
        };
        let (window, retry_after) = self.sign_in_window();
        let read = WindowCount {
            key: key(client),
            window,
            count: 0,
        };
        let failures = match windows.add_to_windows(vec![read]).await {
            Ok(totals) => totals.first().copied().unwrap_or_default(),
            Err(e) => {
                tracing::warn!(error = %e, "failed sign-ins not read from the store");
                return Ok(());
            }
        };
        if failures < FAILED_SIGN_INS_PER_MINUTE {
            return Ok(());
        }
        Err(HubError::Throttled {
            message: format!(
                "Too many failed sign-ins from this address: {FAILED_SIGN_INS_PER_MINUTE} in a minute. Try again in {retry_after} seconds."
            ),
            retry_after_secs: u32::try_from(retry_after).unwrap_or(u32::MAX),
        })
    }

    /// Counts one failed sign-in from `client`, and forgets the counts of past minutes.
    pub async fn sign_in_failed(&self, client: Option<IpAddr>) {
        let Some(windows) = &self.rate_windows else {
            return;
        };
        let (window, _) = self.sign_in_window();
        let failure = WindowCount {
            key: key(client),
            window,
            count: 1,
        };
        if let Err(e) = windows.add_to_windows(vec![failure]).await {
            tracing::warn!(error = %e, "a failed sign-in not counted in the store");
        }
        // Past minutes end before `window - MINUTE`; the throttle's own windows are seconds
        // older than that too, so nothing it still reads goes.
        if let Err(e) = windows.forget_windows_before(window - MINUTE).await {
            tracing::debug!(error = %e, "old sign-in windows not forgotten");
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use std::sync::Arc;

    use ironhub_embedded::SqliteStore;
    use ironhub_store::{Clock, ManualClock};

    use super::*;
    use crate::Backends;

    async fn hub(dir: &std::path::Path, clock: &Arc<ManualClock>) -> Hub {
        let store = Arc::new(SqliteStore::open(dir).unwrap());
        let backends = Backends {
            store: store.clone(),
            events: Arc::new(ironhub_embedded::SqliteEventLog::open(dir, 1).unwrap()),
            bus: Arc::new(ironhub_embedded::LocalBus::new()),
        };
        Hub::open(backends, vec!["hub.example".into()])
            .await
            .unwrap()
            .with_clock(clock.clone() as Arc<dyn Clock>)
            .with_rate_windows(store)
    }

    #[tokio::test]
    async fn an_address_is_refused_after_its_failures_until_the_minute_ends() {
        let dir = tempfile::tempdir().unwrap();
        let clock = Arc::new(ManualClock::new(
            chrono::DateTime::from_timestamp(1_800_000_010, 0).unwrap(),
        ));
        // Two nodes sharing one store.
        let (a, b) = (hub(dir.path(), &clock).await, hub(dir.path(), &clock).await);
        let bad: IpAddr = "192.0.2.7".parse().unwrap();
        let other: IpAddr = "192.0.2.8".parse().unwrap();
        for i in 0..FAILED_SIGN_INS_PER_MINUTE {
            let node = if i % 2 == 0 { &a } else { &b };
            node.admit_sign_in(Some(bad)).await.unwrap();
            node.sign_in_failed(Some(bad)).await;
        }
        let refused = b.admit_sign_in(Some(bad)).await.unwrap_err();
        assert_eq!(refused.status(), 429);
        assert_eq!(refused.retry_after(), Some(50));
        assert!(refused.to_string().contains("failed sign-ins"), "{refused}");
        a.admit_sign_in(Some(other)).await.unwrap();
        // The next minute starts afresh.
        clock.advance(chrono::TimeDelta::seconds(50));
        a.admit_sign_in(Some(bad)).await.unwrap();
    }
}
