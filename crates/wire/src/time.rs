//! Timestamps as IoT Hub and DPS write them: ISO-8601 UTC with seven fractional digits
//! (`2021-10-06T03:51:16.6849749Z`), and `0001-01-01T00:00:00Z` for "never" on IoT Hub.
//!
//! Used as a serde `with` module for `Option<DateTime<Utc>>` fields: `None` is written as
//! `null` (or left out with `skip_serializing_if`), any RFC 3339 time is read, and an empty
//! string reads as `None`.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Deserializer, Serializer};

/// `2021-10-06T03:51:16.6849749Z`.
pub fn format(t: &DateTime<Utc>) -> String {
    format!(
        "{}.{:07}Z",
        t.format("%Y-%m-%dT%H:%M:%S"),
        t.timestamp_subsec_nanos() / 100
    )
}

/// IoT Hub's rendering of an optional time: [`format`], or `0001-01-01T00:00:00Z` for never.
pub fn azure_time(t: Option<DateTime<Utc>>) -> String {
    t.as_ref()
        .map_or_else(|| "0001-01-01T00:00:00Z".to_owned(), format)
}

/// Writes `Some(t)` as [`format`] and `None` as `null`.
pub fn serialize<S: Serializer>(t: &Option<DateTime<Utc>>, s: S) -> Result<S::Ok, S::Error> {
    match t {
        Some(t) => s.serialize_str(&format(t)),
        None => s.serialize_none(),
    }
}

/// Reads any RFC 3339 time; `null` and `""` read as `None`.
pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<DateTime<Utc>>, D::Error> {
    let text = Option::<String>::deserialize(d)?;
    text.filter(|t| !t.is_empty())
        .map(|t| {
            DateTime::parse_from_rfc3339(&t)
                .map(|t| t.with_timezone(&Utc))
                .map_err(serde::de::Error::custom)
        })
        .transpose()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_have_seven_fractional_digits() {
        let t = DateTime::parse_from_rfc3339("2021-10-06T03:51:16.684974912Z")
            .unwrap()
            .with_timezone(&Utc);
        assert_eq!(format(&t), "2021-10-06T03:51:16.6849749Z");
        assert_eq!(azure_time(Some(t)), "2021-10-06T03:51:16.6849749Z");
        assert_eq!(azure_time(None), "0001-01-01T00:00:00Z");
        let whole = DateTime::parse_from_rfc3339("2020-09-23T10:58:31Z")
            .unwrap()
            .with_timezone(&Utc);
        assert_eq!(format(&whole), "2020-09-23T10:58:31.0000000Z");
    }
}
