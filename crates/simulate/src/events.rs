//! Reading the run's own messages back from the hub's event stream (the REST stream
//! `GET /events/consumergroups/$Default/stream`, the same log the Event Hubs endpoint serves):
//! each one whose message id names this run is counted and timed from its send time, which
//! the id carries (see `device::message_id`).

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use chrono::{DateTime, SecondsFormat, Utc};
use ironhub_client::HubClient;
use serde_json::Value;
use tokio::sync::watch;

use crate::device::sent_at;
use crate::stats::{Latency, Stats, bump};

/// The stream's idle timeout asked of the server (the reader leaves when told anyway).
const STREAM_IDLE_SECS: u64 = 3600;

/// Reads from `from` until `stop` turns true; errors are counted as `event-stream`.
pub async fn read(
    client: HubClient,
    run: String,
    from: DateTime<Utc>,
    stats: Arc<Stats>,
    mut stop: watch::Receiver<bool>,
) {
    let query = [
        (
            "from",
            format!("time:{}", from.to_rfc3339_opts(SecondsFormat::Millis, true)),
        ),
        ("timeout", STREAM_IDLE_SECS.to_string()),
    ];
    let mut lines = match client.event_stream("$Default", &query).await {
        Ok(lines) => lines,
        Err(e) => {
            stats.error_because("event-stream", &e.into());
            return;
        }
    };
    loop {
        tokio::select! {
            changed = stop.changed() => {
                if changed.is_err() || *stop.borrow() {
                    return;
                }
            }
            line = lines.next_line() => match line {
                Ok(Some(line)) => seen(&run, &line, &stats),
                Ok(None) => {
                    stats.error_because("event-stream", &anyhow::anyhow!("the server ended the stream"));
                    return;
                }
                Err(e) => {
                    stats.error_because("event-stream", &e.into());
                    return;
                }
            },
        }
    }
}

/// Counts and times one stream line if it is one of the run's messages.
fn seen(run: &str, line: &str, stats: &Stats) {
    let Ok(event) = serde_json::from_str::<Value>(line) else {
        return;
    };
    let Some(at) = event["systemProperties"]["message-id"]
        .as_str()
        .and_then(|id| sent_at(run, id))
    else {
        return;
    };
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX));
    stats.record(
        Latency::Stream,
        Duration::from_micros(now.saturating_sub(at)),
    );
    bump(&stats.in_stream);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stats::get;

    #[test]
    fn only_the_runs_messages_count() {
        let stats = Stats::default();
        let id = crate::device::message_id("run1", 0, 0);
        seen(
            "run1",
            &format!(r#"{{"systemProperties":{{"message-id":"{id}"}}}}"#),
            &stats,
        );
        seen(
            "run1",
            r#"{"systemProperties":{"message-id":"run2.0.0.1"}}"#,
            &stats,
        );
        seen("run1", r#"{"systemProperties":{}}"#, &stats);
        seen("run1", "not json", &stats);
        assert_eq!(get(&stats.in_stream), 1);
        assert!(stats.percentiles(Latency::Stream).is_some());
    }
}
