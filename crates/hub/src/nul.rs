//! The NUL character (`\u0000`) in the documents the hub and DPS store. No engine's JSON column
//! need hold it (PostgreSQL's `jsonb` and `text` cannot), and IoT Hub refuses it as bad input,
//! so the domain refuses it before anything is written, in one place: twins (`twin`), devices
//! and modules (`registry`, `modules`, import rows), configurations, jobs, cloud-to-device
//! messages, the routing document, network rules, CA certificates (`ca`), DPS enrollments and
//! custom allocation webhooks' answers call [`reject_nul`] or [`contains_nul`].

use serde_json::Value;

use crate::HubError;

/// Whether a key or a string anywhere in `value` holds the NUL character.
pub fn contains_nul(value: &Value) -> bool {
    match value {
        Value::String(s) => s.contains('\0'),
        Value::Array(items) => items.iter().any(contains_nul),
        Value::Object(o) => o.iter().any(|(k, v)| k.contains('\0') || contains_nul(v)),
        Value::Null | Value::Bool(_) | Value::Number(_) => false,
    }
}

/// The message of a refusal: `what` holds the NUL character.
pub fn nul_message(what: &str) -> String {
    format!("A string in {what} contains the NUL character (\\u0000), which is not allowed.")
}

/// `400 ArgumentInvalid` when `value` (the document `what` names) holds the NUL character.
pub fn reject_nul(value: &Value, what: &str) -> Result<(), HubError> {
    if contains_nul(value) {
        return Err(HubError::ArgumentInvalid(nul_message(what)));
    }
    Ok(())
}

/// [`reject_nul`] over a document that serializes to JSON.
pub fn reject_nul_in<T: serde::Serialize>(doc: &T, what: &str) -> Result<(), HubError> {
    let value = serde_json::to_value(doc)
        .map_err(|e| HubError::ArgumentInvalid(format!("{what} is not valid JSON: {e}")))?;
    reject_nul(&value, what)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn nul_is_found_in_keys_and_strings_at_any_depth() {
        for bad in [
            json!("a\u{0}"),
            json!({"k": ["x", {"y": "\u{0}"}]}),
            json!({"a\u{0}b": 1}),
        ] {
            assert!(contains_nul(&bad), "{bad}");
            assert!(matches!(
                reject_nul(&bad, "the body"),
                Err(HubError::ArgumentInvalid(_))
            ));
        }
        for good in [json!(null), json!({"k": ["\\u0000", 0, true]}), json!("a")] {
            assert!(!contains_nul(&good), "{good}");
        }
    }
}
