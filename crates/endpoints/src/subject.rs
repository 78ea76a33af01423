//! The subject of a NATS endpoint. `{deviceId}` is replaced by the sender's device id with every character
//! other than ASCII letters, digits, `-` and `_` written `%XX`, so a device id can neither
//! add tokens (`.`) nor wildcards.

use crate::error::EndpointConfigError;

const DEVICE_ID: &str = "{deviceId}";

/// Checks a subject to publish to: dot-separated non-empty tokens, no whitespace, no
/// wildcard, `{deviceId}` the only placeholder.
pub fn check_subject(subject: &str) -> Result<(), EndpointConfigError> {
    let err = |why: &str| EndpointConfigError::new(format!("subject '{subject}' {why}"));
    if subject.is_empty() {
        return Err(err("is empty"));
    }
    for token in subject.split('.') {
        if token.is_empty() {
            return Err(err("has an empty token"));
        }
        if token.contains(char::is_whitespace) || token.chars().any(char::is_control) {
            return Err(err("contains whitespace"));
        }
        if token == "*" || token == ">" || token.contains(['*', '>']) {
            return Err(err(
                "contains a wildcard ('*' or '>'); one publishes to a subject",
            ));
        }
        if token.replace(DEVICE_ID, "").contains(['{', '}']) {
            return Err(err("has a placeholder other than {deviceId}"));
        }
    }
    Ok(())
}

/// The subject for `device_id`.
pub fn render_subject(subject: &str, device_id: &str) -> String {
    if !subject.contains(DEVICE_ID) {
        return subject.to_owned();
    }
    let mut escaped = String::with_capacity(device_id.len());
    for b in device_id.bytes() {
        if b.is_ascii_alphanumeric() || b == b'-' || b == b'_' {
            escaped.push(char::from(b));
        } else {
            escaped.push_str(&format!("%{b:02X}"));
        }
    }
    subject.replace(DEVICE_ID, &escaped)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn device_ids_cannot_change_the_subject_shape() {
        assert_eq!(
            render_subject("t.{deviceId}.in", "dev.1*>%"),
            "t.dev%2E1%2A%3E%25.in"
        );
        assert_eq!(render_subject("fixed", "d"), "fixed");
    }

    #[test]
    fn subjects_are_checked() {
        assert!(check_subject("a.{deviceId}").is_ok());
        assert!(check_subject("a..b").is_err());
        assert!(check_subject("a.>").is_err());
        assert!(check_subject("a b").is_err());
        assert!(check_subject("a.{moduleId}").is_err());
        assert!(check_subject("").is_err());
    }
}
