//! Throttling: per-hub and per-device rates of each kind of operation, as IoT Hub and DPS
//! enforce them ("IoT Hub quotas and throttling", section "Operation throttles"), off unless
//! configured. One [`Throttle`] serves the hub and DPS of a node; adapters only render its
//! refusal ([`HubError::Throttled`]: 429, `429001 ThrottlingException`, `Retry-After`).
//!
//! Each rate is a token bucket refilled once a second: a key (`d2c` for the hub, `d2c/{id}`
//! for one device) starts with `burst` tokens, gains `rate` at every new one-second window
//! (Unix seconds, so all nodes agree on the windows) up to `burst`, and each operation takes
//! one. The operations of a window are counted through the store's [`RateWindows`] port:
//! the node admits from its own view (what it admitted plus what the other nodes had
//! admitted when it last looked) and reconciles with the store in the background every
//! `sync_interval` (200 ms by default), so no operation waits on the store. Between two
//! reconciliations the other nodes' admissions are unseen: DESIGN.md ("Throttling") gives the
//! overshoot this allows.

use std::collections::HashMap;
use std::hash::{Hash as _, Hasher as _};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::Duration;

use ironhub_store::{Clock, RateWindows, SystemClock, WindowCount};
use serde::Deserialize;

use crate::HubError;

/// The kinds of operation IoT Hub and DPS throttle apart.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Operation {
    /// Device-to-cloud sends (telemetry), per sending device.
    DeviceToCloud,
    /// Twin reads and reported-property updates by devices (and modules).
    DeviceTwin,
    /// Twin reads and updates through the service API, per target device.
    ServiceTwin,
    /// Cloud-to-device sends, per target device.
    CloudToDevice,
    /// Direct method calls, per target device.
    Methods,
    /// Identity registry operations (create, get, list, update, delete, bulk).
    Registry,
    /// DPS device registrations, per registration id.
    DpsRegistration,
}

impl Operation {
    /// The operation's name in keys and in the `[throttling]` table.
    pub fn name(self) -> &'static str {
        match self {
            Operation::DeviceToCloud => "d2c",
            Operation::DeviceTwin => "device_twin",
            Operation::ServiceTwin => "service_twin",
            Operation::CloudToDevice => "c2d",
            Operation::Methods => "methods",
            Operation::Registry => "registry",
            Operation::DpsRegistration => "dps_registrations",
        }
    }

    /// What the refusal says was exceeded.
    fn describe(self) -> &'static str {
        match self {
            Operation::DeviceToCloud => "device-to-cloud sends",
            Operation::DeviceTwin => "device twin operations",
            Operation::ServiceTwin => "twin operations",
            Operation::CloudToDevice => "cloud-to-device sends",
            Operation::Methods => "direct method calls",
            Operation::Registry => "identity registry operations",
            Operation::DpsRegistration => "device registrations",
        }
    }
}

/// One rate: `rate` operations a second on average, up to `burst` at once.
#[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rate {
    /// Operations per second (may be below 1, e.g. 1.67 for IoT Hub's 100 a minute).
    pub rate: f64,
    /// The most taken at once after a quiet time [default: the rate, at least 1].
    #[serde(default)]
    pub burst: Option<u32>,
}

impl Rate {
    fn burst(&self) -> f64 {
        f64::from(self.burst.unwrap_or(0))
            .max(self.rate.ceil())
            .max(1.0)
    }
}

/// The rates of one kind of operation: for the whole hub, for each device, or both.
#[derive(Debug, Clone, Copy, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rates {
    pub hub: Option<Rate>,
    pub device: Option<Rate>,
}

/// The `[throttling]` table: rates per kind of operation; a kind left out is not throttled.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ThrottleSettings {
    /// How often a node reconciles its counts with the store, in milliseconds (10–1000)
    /// [default: 200].
    pub sync_interval_ms: Option<u64>,
    #[serde(default)]
    pub d2c: Rates,
    #[serde(default)]
    pub device_twin: Rates,
    #[serde(default)]
    pub service_twin: Rates,
    #[serde(default)]
    pub c2d: Rates,
    #[serde(default)]
    pub methods: Rates,
    #[serde(default)]
    pub registry: Rates,
    #[serde(default)]
    pub dps_registrations: Rates,
}

impl ThrottleSettings {
    /// The rates of `op`.
    pub fn rates(&self, op: Operation) -> Rates {
        match op {
            Operation::DeviceToCloud => self.d2c,
            Operation::DeviceTwin => self.device_twin,
            Operation::ServiceTwin => self.service_twin,
            Operation::CloudToDevice => self.c2d,
            Operation::Methods => self.methods,
            Operation::Registry => self.registry,
            Operation::DpsRegistration => self.dps_registrations,
        }
    }

    /// Checks every rate: positive and finite, the interval within bounds.
    pub fn check(&self) -> Result<(), String> {
        if let Some(ms) = self.sync_interval_ms
            && !(10..=1000).contains(&ms)
        {
            return Err(format!(
                "throttling.sync_interval_ms is {ms}: use 10 to 1000"
            ));
        }
        for op in ALL {
            let rates = self.rates(op);
            for (scope, rate) in [("hub", rates.hub), ("device", rates.device)] {
                if let Some(r) = rate
                    && !(r.rate.is_finite() && r.rate > 0.0 && r.rate <= 1e9)
                {
                    return Err(format!(
                        "throttling.{}.{scope}.rate is {}: use a positive number of operations a second",
                        op.name(),
                        r.rate
                    ));
                }
            }
        }
        Ok(())
    }

    /// The reconciliation interval.
    pub fn sync_interval(&self) -> Duration {
        Duration::from_millis(self.sync_interval_ms.unwrap_or(200).clamp(10, 1000))
    }
}

const ALL: [Operation; 7] = [
    Operation::DeviceToCloud,
    Operation::DeviceTwin,
    Operation::ServiceTwin,
    Operation::CloudToDevice,
    Operation::Methods,
    Operation::Registry,
    Operation::DpsRegistration,
];

/// One key's bucket as this node sees it, for the current window.
#[derive(Debug, Clone)]
struct Bucket {
    window: u64,
    rate: f64,
    burst: f64,
    /// Tokens at the start of `window`.
    tokens: f64,
    /// Admitted by this node in `window`.
    mine: u64,
    /// Of `mine`, how many the store has been told.
    mine_told: u64,
    /// Admitted by the other nodes in `window`, as last read from the store.
    others: u64,
    /// Admitted by this node and not yet told, per window (at most the last two).
    untold: Vec<(u64, u64)>,
}

impl Bucket {
    fn new(window: u64, rate: Rate) -> Self {
        Bucket {
            window,
            rate: rate.rate,
            burst: rate.burst(),
            tokens: rate.burst(),
            mine: 0,
            mine_told: 0,
            others: 0,
            untold: Vec::new(),
        }
    }

    fn used(&self) -> u64 {
        self.mine + self.others
    }

    /// Moves the bucket to `window`, refilling it for the windows passed.
    fn roll(&mut self, window: u64) {
        if window <= self.window {
            return;
        }
        let passed = (window - self.window) as f64;
        let left = (self.tokens - self.used() as f64).max(0.0);
        self.tokens = (left + self.rate * passed).min(self.burst);
        self.window = window;
        self.mine = 0;
        self.mine_told = 0;
        self.others = 0;
    }

    fn has_room(&self) -> bool {
        (self.used() as f64) + 1.0 <= self.tokens
    }

    /// Whole seconds until one more would be admitted (at least 1).
    fn retry_after(&self) -> u32 {
        let short = self.used() as f64 + 1.0 - self.tokens;
        let windows = (short / self.rate).ceil().max(1.0);
        windows.min(3600.0) as u32
    }

    fn take(&mut self) {
        self.mine += 1;
        match self.untold.iter_mut().find(|(w, _)| *w == self.window) {
            Some((_, n)) => *n += 1,
            None => self.untold.push((self.window, 1)),
        }
    }

    /// Quiet long enough to be full again: forgetting it changes nothing.
    fn is_idle(&self, window: u64) -> bool {
        self.untold.is_empty()
            && window > self.window
            && (self.tokens - self.used() as f64).max(0.0)
                + self.rate * (window - self.window) as f64
                >= self.burst
    }
}

/// Shards of the buckets, each under its own lock.
const SHARDS: usize = 64;

type Shard = HashMap<String, Bucket>;

/// The shard holding `key`'s bucket.
fn shard_of(key: &str) -> usize {
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    key.hash(&mut hasher);
    (hasher.finish() % SHARDS as u64) as usize
}

/// `key`'s bucket among the locked shards.
fn find<'a>(locked: &'a mut [(usize, MutexGuard<'_, Shard>)], key: &str) -> Option<&'a mut Bucket> {
    let shard = shard_of(key);
    locked
        .iter_mut()
        .find(|(i, _)| *i == shard)
        .and_then(|(_, buckets)| buckets.get_mut(key))
}

/// The limiter a node's hub and DPS consult (see the module documentation).
///
/// The buckets are sharded by key, each shard under its own lock, so that operations on
/// different devices rarely wait on each other; an operation that takes from two buckets (the
/// hub's and a device's) locks both shards, in shard order, and decides under both locks.
#[derive(Debug)]
pub struct Throttle {
    settings: ThrottleSettings,
    windows: Arc<dyn RateWindows>,
    clock: Arc<dyn Clock>,
    shards: Box<[Mutex<Shard>]>,
}

impl Throttle {
    /// A limiter counting through `windows`, reading the time from the system clock.
    pub fn new(settings: ThrottleSettings, windows: Arc<dyn RateWindows>) -> Self {
        Throttle {
            settings,
            windows,
            clock: Arc::new(SystemClock),
            shards: (0..SHARDS).map(|_| Mutex::default()).collect(),
        }
    }

    fn lock(&self, shard: usize) -> MutexGuard<'_, Shard> {
        self.shards[shard]
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The same limiter reading the time from `clock` (tests move time instead of sleeping).
    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// Its settings.
    pub fn settings(&self) -> &ThrottleSettings {
        &self.settings
    }

    fn window(&self) -> u64 {
        u64::try_from(self.clock.now().timestamp()).unwrap_or(0)
    }

    /// Admits one `op` by `device` (the sender, or the device it is aimed at; `None` for
    /// operations on no one device), or refuses it with IoT Hub's throttling error. Takes a
    /// token from the hub's bucket and the device's only when both have one.
    pub fn admit(&self, op: Operation, device: Option<&str>) -> Result<(), HubError> {
        let rates = self.settings.rates(op);
        let device_rate = rates.device.zip(device);
        if rates.hub.is_none() && device_rate.is_none() {
            return Ok(());
        }
        let window = self.window();
        let mut keys = Vec::with_capacity(2);
        if let Some(rate) = rates.hub {
            keys.push((op.name().to_owned(), rate, "the hub"));
        }
        if let Some((rate, id)) = device_rate {
            keys.push((format!("{}/{id}", op.name()), rate, "this device"));
        }
        // Both shards locked, in shard order (no two callers wait on each other in a cycle).
        let mut shards: Vec<usize> = keys.iter().map(|(key, _, _)| shard_of(key)).collect();
        shards.sort_unstable();
        shards.dedup();
        let mut locked: Vec<(usize, MutexGuard<'_, Shard>)> =
            shards.into_iter().map(|i| (i, self.lock(i))).collect();
        for (key, rate, _) in &keys {
            match find(&mut locked, key) {
                Some(b) => b.roll(window),
                None => {
                    let shard = shard_of(key);
                    if let Some((_, buckets)) = locked.iter_mut().find(|(i, _)| *i == shard) {
                        buckets.insert(key.clone(), Bucket::new(window, *rate));
                    }
                }
            }
        }
        for (key, rate, whose) in &keys {
            if let Some(b) = find(&mut locked, key)
                && !b.has_room()
            {
                return Err(HubError::Throttled {
                    message: format!(
                        "Too many {} for {whose}: the limit is {} a second (bursts of {}).",
                        op.describe(),
                        rate.rate,
                        rate.burst()
                    ),
                    retry_after_secs: b.retry_after(),
                });
            }
        }
        for (key, _, _) in &keys {
            if let Some(b) = find(&mut locked, key) {
                b.take();
            }
        }
        Ok(())
    }

    /// Tells the store what this node admitted since the last time and reads what the other
    /// nodes admitted; forgets quiet keys and old windows. A failure keeps the local view
    /// (the counts it could not tell are dropped, and logged).
    pub async fn reconcile(&self) {
        let window = self.window();
        let mut asked: Vec<(String, u64, u64)> = Vec::new();
        for shard in 0..SHARDS {
            let mut buckets = self.lock(shard);
            buckets.retain(|_, b| !b.is_idle(window));
            for (key, b) in buckets.iter_mut() {
                let mut told_this_window = false;
                for (w, n) in b.untold.drain(..) {
                    told_this_window |= w == window;
                    asked.push((key.clone(), w, n));
                }
                // A bucket of this window reads the others' count even if it has nothing to tell.
                if b.window == window && !told_this_window {
                    asked.push((key.clone(), window, 0));
                }
            }
        }
        if asked.is_empty() {
            return;
        }
        let counts = asked
            .iter()
            .map(|(key, window, count)| WindowCount {
                key: key.clone(),
                window: *window,
                count: *count,
            })
            .collect();
        let totals = match self.windows.add_to_windows(counts).await {
            Ok(totals) => totals,
            Err(e) => {
                tracing::warn!(error = %e, "throttling counts not reconciled with the store");
                return;
            }
        };
        for ((key, w, n), total) in asked.iter().zip(totals) {
            if let Some(b) = self.lock(shard_of(key)).get_mut(key)
                && b.window == *w
            {
                b.mine_told += n;
                b.others = total.saturating_sub(b.mine_told);
            }
        }
        // Windows older than the last few are never read again.
        if window.is_multiple_of(16)
            && let Err(e) = self
                .windows
                .forget_windows_before(window.saturating_sub(4))
                .await
        {
            tracing::debug!(error = %e, "old throttling windows not forgotten");
        }
    }

    /// Reconciles every `sync_interval` until the limiter is dropped.
    pub fn spawn_reconciler(self: &Arc<Self>) -> tokio::task::JoinHandle<()> {
        let weak: Weak<Self> = Arc::downgrade(self);
        let interval = self.settings.sync_interval();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(interval);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                let Some(throttle) = weak.upgrade() else {
                    break;
                };
                throttle.reconcile().await;
            }
        })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use ironhub_embedded::SqliteStore;
    use ironhub_store::ManualClock;

    use super::*;

    fn settings(hub: Option<Rate>, device: Option<Rate>) -> ThrottleSettings {
        ThrottleSettings {
            d2c: Rates { hub, device },
            ..ThrottleSettings::default()
        }
    }

    fn rate(rate: f64, burst: u32) -> Option<Rate> {
        Some(Rate {
            rate,
            burst: Some(burst),
        })
    }

    fn node(s: &ThrottleSettings, store: &SqliteStore, clock: &Arc<ManualClock>) -> Throttle {
        Throttle::new(s.clone(), Arc::new(store.clone())).with_clock(clock.clone())
    }

    fn admitted(t: &Throttle, device: &str, n: usize) -> usize {
        (0..n)
            .filter(|_| t.admit(Operation::DeviceToCloud, Some(device)).is_ok())
            .count()
    }

    fn second() -> chrono::TimeDelta {
        chrono::TimeDelta::seconds(1)
    }

    #[tokio::test]
    async fn a_device_gets_its_burst_then_its_rate_and_others_keep_theirs() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(dir.path()).unwrap();
        let clock = Arc::new(ManualClock::default());
        let t = node(&settings(None, rate(2.0, 5)), &store, &clock);
        assert_eq!(admitted(&t, "a", 10), 5, "the burst first");
        let refused = t.admit(Operation::DeviceToCloud, Some("a")).unwrap_err();
        assert_eq!((refused.status(), refused.code()), (429, 429_001));
        assert_eq!(refused.name(), "ThrottlingException");
        assert_eq!(refused.retry_after(), Some(1));
        assert_eq!(admitted(&t, "b", 5), 5, "another device is not held back");
        clock.advance(second());
        assert_eq!(admitted(&t, "a", 10), 2, "then the rate");
        clock.advance(second() * 10);
        assert_eq!(admitted(&t, "a", 10), 5, "a quiet device is full again");
        assert!(
            t.admit(Operation::Registry, None).is_ok(),
            "operations without rates are not throttled"
        );
    }

    #[tokio::test]
    async fn the_hub_rate_holds_over_all_devices() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(dir.path()).unwrap();
        let clock = Arc::new(ManualClock::default());
        let t = node(&settings(rate(3.0, 3), rate(10.0, 10)), &store, &clock);
        assert_eq!(admitted(&t, "a", 2) + admitted(&t, "b", 2), 3);
        clock.advance(second());
        assert_eq!(admitted(&t, "c", 5), 3);
    }

    #[tokio::test]
    async fn threads_on_many_devices_share_the_hub_bucket_exactly() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(dir.path()).unwrap();
        let clock = Arc::new(ManualClock::default());
        // The hub's bucket and the devices' sit in different shards; each device may send 3.
        let t = Arc::new(node(
            &settings(rate(100.0, 100), rate(1.0, 3)),
            &store,
            &clock,
        ));
        let threads: Vec<_> = (0..8)
            .map(|n| {
                let t = t.clone();
                std::thread::spawn(move || {
                    (0..10)
                        .map(|d| admitted(&t, &format!("t{n}-d{d}"), 5))
                        .sum::<usize>()
                })
            })
            .collect();
        let total: usize = threads.into_iter().map(|h| h.join().unwrap()).sum();
        assert_eq!(
            total, 100,
            "80 devices could take 240; the hub's burst is 100"
        );
        assert!(t.admit(Operation::DeviceToCloud, Some("fresh")).is_err());
        // A refusal by the hub takes nothing from the device: it still has its burst later.
        clock.advance(second());
        assert_eq!(admitted(&t, "fresh", 5), 3);
    }

    #[tokio::test]
    async fn a_slow_rate_says_when_to_come_back() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(dir.path()).unwrap();
        let clock = Arc::new(ManualClock::default());
        let t = node(&settings(rate(0.25, 1), None), &store, &clock);
        assert!(t.admit(Operation::DeviceToCloud, None).is_ok());
        let e = t.admit(Operation::DeviceToCloud, None).unwrap_err();
        assert_eq!(e.retry_after(), Some(4));
    }

    #[tokio::test]
    async fn nodes_sharing_a_store_share_the_limit_after_reconciling() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(dir.path()).unwrap();
        let clock = Arc::new(ManualClock::default());
        let s = settings(rate(10.0, 10), None);
        let a = node(&s, &store, &clock);
        let b = node(&s, &store, &clock);
        assert_eq!(admitted(&a, "x", 6), 6);
        a.reconcile().await;
        b.admit(Operation::DeviceToCloud, Some("y")).unwrap();
        b.reconcile().await;
        assert_eq!(
            admitted(&b, "y", 10),
            3,
            "b sees a's 6 once both reconciled"
        );
        b.reconcile().await;
        a.reconcile().await;
        assert_eq!(admitted(&a, "x", 10), 0, "and a sees b's 4");
        clock.advance(second());
        assert_eq!(admitted(&a, "x", 20), 10, "the next window refills");
    }

    #[test]
    fn settings_are_checked() {
        let bad = settings(rate(0.0, 1), None);
        assert!(bad.check().unwrap_err().contains("throttling.d2c.hub.rate"));
        let interval = ThrottleSettings {
            sync_interval_ms: Some(5),
            ..ThrottleSettings::default()
        };
        assert!(interval.check().is_err());
        assert!(settings(rate(1.67, 1), rate(5.0, 10)).check().is_ok());
    }
}
