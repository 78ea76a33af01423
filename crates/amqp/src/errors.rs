//! The AMQP errors links are closed and messages rejected with, in IoT Hub's conditions
//! (`amqp:not-found`, `amqp:unauthorized-access`, `amqp:link:message-size-exceeded`,
//! `com.microsoft:device-container-throttled`, …), with
//! IoT Hub's error code name under `com.microsoft:error-code` when the domain gave one.

use fe2o3_amqp::types::definitions::{AmqpError, Error, ErrorCondition, LinkError};
use fe2o3_amqp::types::primitives::{OrderedMap, Symbol, Value};
use ironhub_hub::HubError;

/// An error with a description.
pub fn error(condition: impl Into<ErrorCondition>, description: impl Into<String>) -> Error {
    Error::new(condition, Some(description.into()), None)
}

/// No node at `address`.
pub fn not_found(address: &str) -> Error {
    error(
        AmqpError::NotFound,
        format!("The messaging entity '{address}' could not be found."),
    )
}

/// No token of the connection covers `address`.
pub fn unauthorized(address: &str) -> Error {
    error(
        AmqpError::UnauthorizedAccess,
        format!("Unauthorized: no valid token for '{address}'."),
    )
}

/// The token that opened a link expired.
pub fn lapsed() -> Error {
    error(
        AmqpError::UnauthorizedAccess,
        "The token that authorized this link expired.",
    )
}

/// The condition of an error with the HTTP status `status` (of the hub's or DPS's errors).
pub fn status_condition(status: u16) -> ErrorCondition {
    match status {
        401 | 403 => AmqpError::UnauthorizedAccess.into(),
        404 => AmqpError::NotFound.into(),
        413 => LinkError::MessageSizeExceeded.into(),
        400 => AmqpError::InvalidField.into(),
        // IoT Hub's throttling condition (the device SDKs read it as a throttling error).
        429 => ErrorCondition::Custom(Symbol::from("com.microsoft:device-container-throttled")),
        _ => AmqpError::InternalError.into(),
    }
}

/// A domain error as AMQP: its condition by the error's status, its code name in the info.
pub fn hub_error(e: &HubError) -> Error {
    let condition = status_condition(e.status());
    let mut info = OrderedMap::new();
    info.insert(
        Symbol::from("com.microsoft:error-code"),
        Value::String(e.name().to_owned()),
    );
    Error::new(condition, Some(e.to_string()), Some(info))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conditions_follow_the_status() {
        let e = hub_error(&HubError::MessageTooLarge(262_144));
        assert_eq!(
            e.condition,
            ErrorCondition::from(LinkError::MessageSizeExceeded)
        );
        let e = hub_error(&HubError::Throttled {
            message: String::new(),
            retry_after_secs: 1,
        });
        assert_eq!(
            e.condition,
            ErrorCondition::Custom(Symbol::from("com.microsoft:device-container-throttled"))
        );
        let e = hub_error(&HubError::DeviceNotFound("d".into()));
        assert_eq!(e.condition, ErrorCondition::from(AmqpError::NotFound));
        let info = e.info.unwrap();
        assert_eq!(
            info.get(&Symbol::from("com.microsoft:error-code")),
            Some(&Value::String("DeviceNotFound".into()))
        );
    }
}
