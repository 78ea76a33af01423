//! What a run counts while it runs (atomic counters, latency histograms, errors by kind), and
//! the report made of it at the end.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use hdrhistogram::Histogram;
use serde::Serialize;

/// The counters every device task adds to.
#[derive(Debug)]
pub struct Stats {
    pub created: AtomicU64,
    pub provisioned: AtomicU64,
    pub connected: AtomicU64,
    pub sent: AtomicU64,
    pub acknowledged: AtomicU64,
    pub in_stream: AtomicU64,
    pub twin_sent: AtomicU64,
    pub twin_accepted: AtomicU64,
    pub c2d_received: AtomicU64,
    pub c2d_completed: AtomicU64,
    pub methods_received: AtomicU64,
    pub methods_answered: AtomicU64,
    errors: Mutex<BTreeMap<String, u64>>,
    first_errors: Mutex<BTreeMap<String, String>>,
    connect: Mutex<Histogram<u64>>,
    puback: Mutex<Histogram<u64>>,
    stream: Mutex<Histogram<u64>>,
}

/// Which latency histogram a sample goes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Latency {
    /// TCP connect to CONNACK (TLS and authentication included).
    Connect,
    /// A QoS 1 PUBLISH to its PUBACK.
    Puback,
    /// A PUBLISH to the moment the event stream delivers it.
    Stream,
}

fn histogram() -> Mutex<Histogram<u64>> {
    // Microseconds from 1 µs to an hour, three significant digits.
    Mutex::new(
        Histogram::new_with_bounds(1, 3_600_000_000, 3).unwrap_or_else(|_| {
            Histogram::new(3).unwrap_or_else(|_| unreachable!("3 significant digits are valid"))
        }),
    )
}

impl Default for Stats {
    fn default() -> Stats {
        Stats {
            created: AtomicU64::new(0),
            provisioned: AtomicU64::new(0),
            connected: AtomicU64::new(0),
            sent: AtomicU64::new(0),
            acknowledged: AtomicU64::new(0),
            in_stream: AtomicU64::new(0),
            twin_sent: AtomicU64::new(0),
            twin_accepted: AtomicU64::new(0),
            c2d_received: AtomicU64::new(0),
            c2d_completed: AtomicU64::new(0),
            methods_received: AtomicU64::new(0),
            methods_answered: AtomicU64::new(0),
            errors: Mutex::new(BTreeMap::new()),
            first_errors: Mutex::new(BTreeMap::new()),
            connect: histogram(),
            puback: histogram(),
            stream: histogram(),
        }
    }
}

/// Adds one to a counter.
pub fn bump(counter: &AtomicU64) {
    counter.fetch_add(1, Ordering::Relaxed);
}

/// A counter's value.
pub fn get(counter: &AtomicU64) -> u64 {
    counter.load(Ordering::Relaxed)
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Stats {
    /// Counts an error of `kind` (`connect`, `provision`, `puback-timeout`, …).
    pub fn error(&self, kind: &str) {
        *lock(&self.errors).entry(kind.to_owned()).or_insert(0) += 1;
    }

    /// Counts an error of `kind` and keeps the first message of each kind.
    pub fn error_because(&self, kind: &str, why: &anyhow::Error) {
        self.error(kind);
        lock(&self.first_errors)
            .entry(kind.to_owned())
            .or_insert_with(|| format!("{why:#}"));
    }

    /// The first message of each kind of error (for errors counted with one).
    pub fn first_errors(&self) -> BTreeMap<String, String> {
        lock(&self.first_errors).clone()
    }

    /// The errors counted so far.
    pub fn errors(&self) -> BTreeMap<String, u64> {
        lock(&self.errors).clone()
    }

    /// Records one latency sample.
    pub fn record(&self, which: Latency, took: Duration) {
        let h = match which {
            Latency::Connect => &self.connect,
            Latency::Puback => &self.puback,
            Latency::Stream => &self.stream,
        };
        let micros = u64::try_from(took.as_micros()).unwrap_or(u64::MAX);
        lock(h).saturating_record(micros.max(1));
    }

    /// The percentiles of one histogram, `None` when it has no sample.
    pub fn percentiles(&self, which: Latency) -> Option<Percentiles> {
        let h = lock(match which {
            Latency::Connect => &self.connect,
            Latency::Puback => &self.puback,
            Latency::Stream => &self.stream,
        });
        if h.is_empty() {
            return None;
        }
        let ms = |micros: u64| micros as f64 / 1000.0;
        Some(Percentiles {
            count: h.len(),
            p50: ms(h.value_at_quantile(0.50)),
            p90: ms(h.value_at_quantile(0.90)),
            p99: ms(h.value_at_quantile(0.99)),
            p999: ms(h.value_at_quantile(0.999)),
            max: ms(h.max()),
        })
    }
}

/// Latency percentiles in milliseconds.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Percentiles {
    pub count: u64,
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
    pub p999: f64,
    pub max: f64,
}

/// The final report (`--output json` prints it as it is).
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Report {
    /// `iothub` or `mqtt` (plain MQTT to any broker).
    pub mode: &'static str,
    pub devices: DeviceCounts,
    /// From the first connect to the last device's last message.
    pub duration_seconds: f64,
    pub connects_per_second: f64,
    pub messages: MessageCounts,
    pub twin: TwinCounts,
    pub c2d: C2dCounts,
    pub methods: MethodCounts,
    pub latency_ms: Latencies,
    /// Errors by kind; empty when none happened.
    pub errors: BTreeMap<String, u64>,
    /// The first error message of each kind that has one.
    pub first_errors: BTreeMap<String, String>,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DeviceCounts {
    pub requested: u64,
    pub created: u64,
    pub provisioned: u64,
    pub connected: u64,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct MessageCounts {
    pub sent: u64,
    /// PUBACKed (QoS 1 only).
    pub acknowledged: u64,
    /// Read back from the hub's event stream (`None` when it was not read).
    pub in_event_stream: Option<u64>,
    pub per_second: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct TwinCounts {
    pub sent: u64,
    pub accepted: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct C2dCounts {
    pub received: u64,
    pub completed: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct MethodCounts {
    pub received: u64,
    pub answered: u64,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Latencies {
    pub connect: Option<Percentiles>,
    pub publish_to_puback: Option<Percentiles>,
    pub publish_to_event_stream: Option<Percentiles>,
}

impl Report {
    /// The report as a person reads it.
    pub fn to_text(&self) -> String {
        let mut out = format!(
            "mode {}: {} devices requested, {} created, {} provisioned, {} connected\n\
             {:.1} s, {:.1} connects/s, {:.1} messages/s\n\
             messages: {} sent, {} acknowledged, {} in the event stream\n\
             twin updates: {} sent, {} accepted; C2D: {} received, {} completed; \
             methods: {} received, {} answered\n",
            self.mode,
            self.devices.requested,
            self.devices.created,
            self.devices.provisioned,
            self.devices.connected,
            self.duration_seconds,
            self.connects_per_second,
            self.messages.per_second,
            self.messages.sent,
            self.messages.acknowledged,
            self.messages
                .in_event_stream
                .map_or_else(|| "(not read)".to_owned(), |n| n.to_string()),
            self.twin.sent,
            self.twin.accepted,
            self.c2d.received,
            self.c2d.completed,
            self.methods.received,
            self.methods.answered,
        );
        for (name, p) in [
            ("connect", &self.latency_ms.connect),
            ("publish→PUBACK", &self.latency_ms.publish_to_puback),
            (
                "publish→event stream",
                &self.latency_ms.publish_to_event_stream,
            ),
        ] {
            if let Some(p) = p {
                out.push_str(&format!(
                    "latency {name} (ms, {} samples): p50 {:.2}  p90 {:.2}  p99 {:.2}  p99.9 {:.2}  max {:.2}\n",
                    p.count, p.p50, p.p90, p.p99, p.p999, p.max
                ));
            }
        }
        if self.errors.is_empty() {
            out.push_str("errors: none\n");
        } else {
            let list: Vec<String> = self
                .errors
                .iter()
                .map(|(k, n)| format!("{k} {n}"))
                .collect();
            out.push_str(&format!("errors: {}\n", list.join(", ")));
            for (kind, why) in &self.first_errors {
                out.push_str(&format!("  first {kind} error: {why}\n"));
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_come_from_the_samples() {
        let s = Stats::default();
        assert_eq!(s.percentiles(Latency::Puback), None);
        for ms in 1..=100u64 {
            s.record(Latency::Puback, Duration::from_millis(ms));
        }
        let p = s.percentiles(Latency::Puback).unwrap();
        assert_eq!(p.count, 100);
        assert!((p.p50 - 50.0).abs() < 0.1, "{p:?}");
        assert!((p.p99 - 99.0).abs() < 0.1, "{p:?}");
        assert!((p.max - 100.0).abs() < 0.1, "{p:?}");
        s.error("connect");
        s.error("connect");
        assert_eq!(s.errors().get("connect"), Some(&2));
        s.error_because("provision", &anyhow::anyhow!("first"));
        s.error_because("provision", &anyhow::anyhow!("second"));
        assert_eq!(s.errors().get("provision"), Some(&2));
        assert_eq!(
            s.first_errors().get("provision").map(String::as_str),
            Some("first")
        );
        assert_eq!(s.first_errors().get("connect"), None);
    }
}
