//! Direct methods: a service calls a method on a connected device and waits for its answer.

use std::time::Duration;

use ironhub_store::BusError;

use crate::{Hub, HubError};
pub use ironhub_wire::hub::{MethodRequest, MethodResult};

/// IoT Hub's limit on a method's request and response payloads.
pub const MAX_METHOD_PAYLOAD: usize = 128 * 1024;

fn seconds(
    value: Option<i64>,
    default: i64,
    range: std::ops::RangeInclusive<i64>,
    name: &str,
) -> Result<u64, HubError> {
    let v = value.unwrap_or(default);
    if range.contains(&v) {
        Ok(u64::try_from(v).unwrap_or(0))
    } else {
        Err(HubError::ArgumentInvalid(format!(
            "{name} must be between {} and {} seconds, not {v}.",
            range.start(),
            range.end()
        )))
    }
}

/// A method request's parts, checked.
pub(crate) struct Checked {
    pub name: String,
    pub response_timeout: u64,
    pub connect_timeout: u64,
    pub payload: Vec<u8>,
}

/// Checks a method request as IoT Hub does (a name, timeouts in range, a payload within
/// [`MAX_METHOD_PAYLOAD`]): the direct method call and a method job's creation.
pub(crate) fn check_request(request: &MethodRequest) -> Result<Checked, HubError> {
    let name = request
        .method_name
        .as_deref()
        .map(str::trim)
        .filter(|n| !n.is_empty())
        .ok_or_else(|| HubError::ArgumentNull("methodName is required.".into()))?
        .to_owned();
    let response_timeout = seconds(
        request.response_timeout_in_seconds,
        30,
        5..=300,
        "responseTimeoutInSeconds",
    )?;
    let connect_timeout = seconds(
        request.connect_timeout_in_seconds,
        0,
        0..=300,
        "connectTimeoutInSeconds",
    )?;
    let payload = serde_json::to_vec(&request.payload)
        .map_err(|e| HubError::ArgumentInvalid(e.to_string()))?;
    if payload.len() > MAX_METHOD_PAYLOAD {
        return Err(HubError::MessageTooLarge(MAX_METHOD_PAYLOAD));
    }
    Ok(Checked {
        name,
        response_timeout,
        connect_timeout,
        payload,
    })
}

impl Hub {
    /// Invokes a direct method on `device_id` and waits for its answer.
    pub async fn invoke_method(
        &self,
        device_id: &str,
        request: MethodRequest,
    ) -> Result<MethodResult, HubError> {
        self.call(device_id, None, request).await
    }

    /// Invokes a direct method on the module `module_id` of `device_id` and waits for its
    /// answer (`POST /twins/{id}/modules/{mid}/methods`).
    pub async fn invoke_module_method(
        &self,
        device_id: &str,
        module_id: &str,
        request: MethodRequest,
    ) -> Result<MethodResult, HubError> {
        self.call(device_id, Some(module_id), request).await
    }

    /// A method call on a device or one of its modules: the request checked, the target
    /// checked to exist, then the call over the bus to its connection.
    pub(crate) async fn call_unobserved(
        &self,
        device_id: &str,
        module_id: Option<&str>,
        request: MethodRequest,
    ) -> Result<MethodResult, HubError> {
        self.admit(crate::throttle::Operation::Methods, Some(device_id))?;
        let Checked {
            name,
            response_timeout,
            connect_timeout,
            payload,
        } = check_request(&request)?;
        let key = match module_id {
            Some(m) => {
                self.get_module(device_id, m).await?;
                format!("{device_id}/{m}")
            }
            None => {
                self.device_record(device_id).await?;
                device_id.to_owned()
            }
        };
        let device_id = key.as_str();

        // With a connect timeout, wait for the device to come online (on any node).
        if connect_timeout > 0 {
            self.bus
                .wait_for_connect(device_id, Duration::from_secs(connect_timeout))
                .await;
        }
        let answer = self
            .bus
            .call_method(
                device_id,
                &name,
                payload,
                Duration::from_secs(response_timeout),
            )
            .await;
        match answer {
            Ok(response) => {
                let payload = if response.payload.iter().all(u8::is_ascii_whitespace) {
                    serde_json::Value::Null
                } else {
                    serde_json::from_slice(&response.payload).unwrap_or_else(|_| {
                        serde_json::Value::String(
                            String::from_utf8_lossy(&response.payload).into_owned(),
                        )
                    })
                };
                Ok(MethodResult {
                    status: response.status,
                    payload,
                })
            }
            Err(BusError::NotConnected | BusError::NotSubscribed) => {
                Err(HubError::DeviceNotOnline(device_id.to_owned()))
            }
            Err(BusError::Timeout) => Err(HubError::GatewayTimeout(format!(
                "Timed out waiting for the response from device '{device_id}'."
            ))),
        }
    }
}
