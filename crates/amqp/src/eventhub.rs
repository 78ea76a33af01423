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

/// Parses one selector expression: `amqp.annotation.{field} {op} {value}`, the form every
/// Event Hubs SDK sends (Python `azure-eventhub`, Node `@azure/event-hubs`, uamqp): the field
/// `x-opt-offset`, `x-opt-sequence-number` or `x-opt-enqueued-time` (Unix milliseconds), the
/// operator `>` or `>=` (inclusive), the value quoted (`'5'`) or a bare number; names in any
/// case, spaces around the operator optional. Anything else is refused with a description.
fn parse_selector(selector: &str) -> Result<ReadFrom, String> {
    let bad = || {
        format!(
            "The selector filter '{selector}' is not supported: a receiver's position is \
             `amqp.annotation.x-opt-offset`, `amqp.annotation.x-opt-sequence-number` or \
             `amqp.annotation.x-opt-enqueued-time` compared with `>` or `>=` to one value."
        )
    };
    let text = selector.trim();
    const PREFIX: &str = "amqp.annotation.";
    let rest = text
        .get(..PREFIX.len())
        .filter(|p| p.eq_ignore_ascii_case(PREFIX))
        .map(|_| &text[PREFIX.len()..])
        .ok_or_else(bad)?;
    let end = rest
        .find(|c: char| c.is_whitespace() || matches!(c, '<' | '>' | '=' | '!'))
        .ok_or_else(bad)?;
    let (field, rest) = rest.split_at(end);
    let rest = rest.trim_start();
    let (inclusive, rest) = if let Some(r) = rest.strip_prefix(">=") {
        (true, r)
    } else if let Some(r) = rest.strip_prefix('>') {
        (false, r)
    } else {
        return Err(bad());
    };
    let rest = rest.trim();
    let value = match rest.strip_prefix('\'') {
        Some(quoted) => quoted.strip_suffix('\'').ok_or_else(bad)?,
        None => rest,
    };
    if value.is_empty() || value.contains('\'') {
        return Err(bad());
    }
    match field.to_ascii_lowercase().as_str() {
        "x-opt-offset" | "x-opt-sequence-number" => {
            if value == "@latest" {
                return Ok(ReadFrom::End);
            }
            let n: i64 = value.parse().map_err(|_| bad())?;
            // Offsets are sequence numbers here; `> '-1'` is the start of the stream.
            if n < 0 {
                return Ok(ReadFrom::Start);
            }
            let first = if inclusive { n } else { n.saturating_add(1) };
            Ok(match u64::try_from(first) {
                Ok(seq) => ReadFrom::Sequence(seq),
                Err(_) => ReadFrom::Start,
            })
        }
        "x-opt-enqueued-time" => {
            // Whole milliseconds; a fractional number (a JavaScript time may be one) is cut.
            let ms = match value.parse::<i64>() {
                Ok(ms) => ms,
                Err(_) => {
                    let f: f64 = value.parse().map_err(|_| bad())?;
                    if !f.is_finite() {
                        return Err(bad());
                    }
                    // Saturates; out of range is refused by `from_timestamp_millis` below.
                    f.floor() as i64
                }
            };
            let ms = if inclusive { ms } else { ms.saturating_add(1) };
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
    sender: Sender,
    reader: EventReader,
    mut hold: PartitionHold,
    closed: watch::Receiver<bool>,
    authorized: impl Fn() -> bool,
) {
    deliver_while_held(sender, reader, &mut hold, closed, authorized).await;
    // Awaited, so a reader that attaches once this link is gone finds the partition free.
    hold.release().await;
}

/// [`deliver`] until it stops, the hold left to the caller.
async fn deliver_while_held(
    mut sender: Sender,
    mut reader: EventReader,
    hold: &mut PartitionHold,
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
        let p = |s: &str| parse_selector(s).unwrap_or_else(|e| panic!("{s}: {e}"));
        let time = |ms| ReadFrom::Time(DateTime::<Utc>::from_timestamp_millis(ms).unwrap());
        // What the SDKs send: Python's `event_position_selector`, Node's
        // `getEventPositionFilter` (offset, sequence number, enqueued time; `>` or `>=`).
        assert_eq!(p("amqp.annotation.x-opt-offset > '-1'"), ReadFrom::Start);
        assert_eq!(p("amqp.annotation.x-opt-offset >= '-1'"), ReadFrom::Start);
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
            p("amqp.annotation.x-opt-offset >= '5'"),
            ReadFrom::Sequence(5)
        );
        assert_eq!(
            p("amqp.annotation.x-opt-sequence-number > '5'"),
            ReadFrom::Sequence(6)
        );
        assert_eq!(
            p("amqp.annotation.x-opt-sequence-number >= '5'"),
            ReadFrom::Sequence(5)
        );
        assert_eq!(
            p("amqp.annotation.x-opt-enqueued-time > '1700000000000'"),
            time(1_700_000_000_001)
        );
        assert_eq!(
            p("amqp.annotation.x-opt-enqueued-time >= '1700000000000'"),
            time(1_700_000_000_000)
        );
        // Looser spellings of the same.
        assert_eq!(
            p("  AMQP.Annotation.X-Opt-Offset>'5'  "),
            ReadFrom::Sequence(6)
        );
        assert_eq!(
            p("amqp.annotation.x-opt-sequence-number>=7"),
            ReadFrom::Sequence(7)
        );
        assert_eq!(p("amqp.annotation.x-opt-offset > 5"), ReadFrom::Sequence(6));
        assert_eq!(
            p("amqp.annotation.x-opt-enqueued-time >= '1700000000000.7'"),
            time(1_700_000_000_000)
        );
        assert_eq!(
            p("amqp.annotation.x-opt-offset > '9223372036854775807'"),
            ReadFrom::Sequence(i64::MAX as u64)
        );
        for bad in [
            "",
            "amqp.annotation.x-opt-offset = '1'",
            "amqp.annotation.x-opt-offset < '1'",
            "amqp.annotation.x-opt-offset <> '1'",
            "amqp.annotation.x-opt-offset > 'x'",
            "amqp.annotation.x-opt-offset > ''",
            "amqp.annotation.x-opt-offset > '1",
            "amqp.annotation.x-opt-offset > '1' AND amqp.annotation.x-opt-offset < '9'",
            "amqp.annotation.x-opt-other > '1'",
            "amqp.annotation.x-opt-enqueued-time > 'NaN'",
            "amqp.annotation.x-opt-enqueued-time > '99999999999999999999'",
            "amqp.annotation.x-opt-offset",
            "x-opt-offset > '1'",
            "sys.offset > '1'",
        ] {
            let e = parse_selector(bad).unwrap_err();
            assert!(e.contains("is not supported"), "{bad}: {e}");
        }
    }
}
