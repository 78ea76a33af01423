//! The Event Hubs-compatible endpoint's receivers: where a reader starts (the selector filter
//! an Event Hubs client puts on its source) and the loop that delivers a partition's events.

use std::time::Duration;

use chrono::{DateTime, Utc};
use fe2o3_amqp::Sender;
use fe2o3_amqp::types::definitions::{AmqpError, Error, Fields, LinkError};
use fe2o3_amqp::types::messaging::FilterSet;
use fe2o3_amqp::types::primitives::{Symbol, Value};
use ironhub_hub::epochs::{PartitionHold, ReaderDisconnected};
use ironhub_hub::events::{EventReader, ReadFrom};
use tokio::sync::watch;

use crate::message::{event_message, value_text};

/// The selector filter's name (Apache's legacy AMQP filters, which Event Hubs uses).
const SELECTOR_FILTER: &str = "apache.org:selector-filter:string";
/// The selector filter's numeric descriptor (0x0000468C:0x00000004).
const SELECTOR_FILTER_CODE: u64 = 0x0000_468C_0000_0004;

/// How long a receiver waits for events before it looks again whether it should stop.
const POLL: Duration = Duration::from_secs(5);

/// The link property an exclusive receiver names its epoch with (the SDKs' `owner_level`,
/// `ownerLevel`).
const EPOCH: &str = "com.microsoft:epoch";

/// The epoch a receiver's attach asks for, if any (a long; other integer types are taken too).
pub fn epoch(properties: Option<&Fields>) -> Option<i64> {
    match properties?.get(&Symbol::from(EPOCH))? {
        Value::Long(n) => Some(*n),
        Value::Int(n) => Some(i64::from(*n)),
        Value::Short(n) => Some(i64::from(*n)),
        Value::Byte(n) => Some(i64::from(*n)),
        Value::Uint(n) => Some(i64::from(*n)),
        Value::Ulong(n) => i64::try_from(*n).ok(),
        _ => None,
    }
}

/// A receiver refused or disconnected for another's epoch: `amqp:link:stolen`, which the
/// Event Hubs SDKs surface as a receiver (consumer) disconnected error.
pub fn stolen(why: &ReaderDisconnected) -> Error {
    Error::new(LinkError::Stolen, Some(why.to_string()), None)
}

/// Where a receiver starts, from its source's filters: a selector filter of the form
/// `amqp.annotation.x-opt-{offset|sequence-number|enqueued-time} {>|>=} 'value'`; no filter
/// reads from the start, as Event Hubs does.
pub fn start_position(filters: Option<&FilterSet>) -> Result<ReadFrom, String> {
    let Some(filters) = filters else {
        return Ok(ReadFrom::Start);
    };
    for (name, value) in filters.iter() {
        let selector = match value {
            Value::Described(described) => {
                let known = match &described.descriptor {
                    serde_amqp::descriptor::Descriptor::Name(n) => n.as_str() == SELECTOR_FILTER,
                    serde_amqp::descriptor::Descriptor::Code(c) => *c == SELECTOR_FILTER_CODE,
                };
                if !known {
                    continue;
                }
                value_text(&described.value)
            }
            other if name.as_str() == SELECTOR_FILTER => value_text(other),
            _ => continue,
        };
        let selector = selector.ok_or("The selector filter is not a string.")?;
        return parse_selector(selector);
    }
    Ok(ReadFrom::Start)
}

/// Parses one selector expression.
fn parse_selector(selector: &str) -> Result<ReadFrom, String> {
    let bad = || format!("The selector filter '{selector}' is not supported.");
    let rest = selector
        .trim()
        .strip_prefix("amqp.annotation.")
        .ok_or_else(bad)?;
    let (field, rest) = rest.split_once(char::is_whitespace).ok_or_else(bad)?;
    let (inclusive, rest) = match rest.trim_start() {
        r if r.starts_with(">=") => (true, &r[2..]),
        r if r.starts_with('>') => (false, &r[1..]),
        _ => return Err(bad()),
    };
    let value = rest
        .trim()
        .strip_prefix('\'')
        .and_then(|v| v.strip_suffix('\''))
        .ok_or_else(bad)?;
    match field {
        "x-opt-offset" | "x-opt-sequence-number" => {
            if value == "@latest" {
                return Ok(ReadFrom::End);
            }
            let n: i64 = value.parse().map_err(|_| bad())?;
            // Offsets are sequence numbers here; `> '-1'` is the start of the stream.
            if n < 0 {
                return Ok(ReadFrom::Start);
            }
            let first = if inclusive { n } else { n + 1 };
            Ok(match u64::try_from(first) {
                Ok(seq) => ReadFrom::Sequence(seq),
                Err(_) => ReadFrom::Start,
            })
        }
        "x-opt-enqueued-time" => {
            let ms: i64 = value.parse().map_err(|_| bad())?;
            let ms = if inclusive { ms } else { ms + 1 };
            let time = DateTime::<Utc>::from_timestamp_millis(ms).ok_or_else(bad)?;
            Ok(ReadFrom::Time(time))
        }
        _ => Err(bad()),
    }
}

/// Delivers a partition's events on `sender` until the link or the connection goes away,
/// `authorized` says the token that opened it lapsed (the link is then closed with
/// `amqp:unauthorized-access`, as a client that does not renew its token sees on Event Hubs),
/// or another receiver takes the partition from `hold` (closed with `amqp:link:stolen`).
pub async fn deliver(
    mut sender: Sender,
    mut reader: EventReader,
    mut hold: PartitionHold,
    mut closed: watch::Receiver<bool>,
    authorized: impl Fn() -> bool,
) {
    // One wait for the whole link (a reader without epoch watches the bus while it waits).
    let lost = hold.lost();
    tokio::pin!(lost);
    loop {
        if !authorized() {
            let _ = sender.close_with_error(crate::errors::lapsed()).await;
            return;
        }
        let batch = tokio::select! {
            batch = reader.next_batch(POLL) => batch,
            _ = sender.on_detach() => return,
            _ = closed.changed() => return,
            lost = &mut lost => {
                let _ = sender.close_with_error(stolen(&lost)).await;
                return;
            }
        };
        let events = match batch {
            Ok(events) => events,
            Err(e) => {
                tracing::warn!(error = %e, "reading the event log for an AMQP receiver failed");
                let _ = sender
                    .close_with_error(Error::new(
                        AmqpError::InternalError,
                        Some(e.to_string()),
                        None,
                    ))
                    .await;
                return;
            }
        };
        for event in &events {
            let sent = tokio::select! {
                sent = sender.send_batchable(event_message(event)) => sent,
                _ = closed.changed() => return,
                lost = &mut lost => {
                    let _ = sender.close_with_error(stolen(&lost)).await;
                    return;
                }
            };
            if sent.is_err() {
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn selectors() {
        let p = |s: &str| parse_selector(s).unwrap();
        assert_eq!(p("amqp.annotation.x-opt-offset > '-1'"), ReadFrom::Start);
        assert_eq!(p("amqp.annotation.x-opt-offset > '@latest'"), ReadFrom::End);
        assert_eq!(
            p("amqp.annotation.x-opt-offset >= '@latest'"),
            ReadFrom::End
        );
        assert_eq!(
            p("amqp.annotation.x-opt-offset > '5'"),
            ReadFrom::Sequence(6)
        );
        assert_eq!(
            p("amqp.annotation.x-opt-sequence-number >= '5'"),
            ReadFrom::Sequence(5)
        );
        assert_eq!(
            p("amqp.annotation.x-opt-enqueued-time > '1700000000000'"),
            ReadFrom::Time(DateTime::<Utc>::from_timestamp_millis(1_700_000_000_001).unwrap())
        );
        for bad in [
            "",
            "amqp.annotation.x-opt-offset = '1'",
            "amqp.annotation.x-opt-offset > 1",
            "amqp.annotation.x-opt-offset > 'x'",
            "amqp.annotation.x-opt-other > '1'",
            "x-opt-offset > '1'",
        ] {
            assert!(parse_selector(bad).is_err(), "{bad}");
        }
    }
}
