//! Custom allocation: DPS calls the enrollment's webhook with the enrollment (without its secrets),
//! what it knows of the device at run time, and the candidate hubs; the webhook answers with the
//! hub (and optionally an initial twin and a payload for the device).
//!
//! The contract is the one the Azure docs describe ("Tutorial: Use custom allocation policies with
//! Device Provisioning Service (DPS)"; "How to use custom allocation policies"): the request body
//! `{"enrollmentGroup" | "individualEnrollment", "deviceRuntimeContext", "linkedHubs"}` and the
//! answer `{"iotHubHostName", "initialTwin", "payload"}` (typed in `ironhub-wire`), and the
//! outcomes of the troubleshooting table of the latter (section "Troubleshooting custom allocation
//! policies"): a 2xx without a hub is `CustomAllocationIoTHubNotSpecified` (400208), a 401 is
//! `CustomAllocationUnauthorizedAccess` (400209), a status of 429 or more is retried 10 times
//! (after 1 s, then 9 s longer each time), anything else is `CustomAllocationFailed` (400207,
//! "Custom allocation failed with status code: 400").

use std::fmt;
use std::future::Future;
use std::time::Duration;

use async_trait::async_trait;

use crate::DpsError;
use crate::model::{CustomAllocationRequest, CustomAllocationResponse};

/// How a webhook call came back: the HTTP status and the body, or why there was no answer.
pub type WebhookResult = Result<(u16, Vec<u8>), String>;

/// Makes the HTTP call of custom allocation (the server wires an HTTPS client in).
#[async_trait]
pub trait AllocationWebhook: Send + Sync + fmt::Debug {
    /// `POST`s `body` (JSON) to `url` exactly as stored (its query string carries the
    /// function key), within `timeout`.
    async fn post(&self, url: &str, body: Vec<u8>, timeout: Duration) -> WebhookResult;
}

/// A webhook client that cannot call out: every call fails, so custom allocation reports
/// `CustomAllocationFailed`. For set-ups (and tests) that never allocate by webhook.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoWebhook;

#[async_trait]
impl AllocationWebhook for NoWebhook {
    async fn post(&self, url: &str, _body: Vec<u8>, _timeout: Duration) -> WebhookResult {
        Err(format!(
            "this server has no HTTP client for webhooks ({url})"
        ))
    }
}

/// What the webhook answers.
pub type WebhookAnswer = CustomAllocationResponse;

/// How often a status of 429 or more is retried, and the waits between tries (the
/// troubleshooting table: retry count 10, initial interval 1 s, increment 9 s).
pub const RETRIES: u32 = 10;
pub const FIRST_RETRY: Duration = Duration::from_secs(1);
pub const RETRY_INCREMENT: Duration = Duration::from_secs(9);
/// How long one call may take.
pub const CALL_TIMEOUT: Duration = Duration::from_secs(30);

/// The wait before retry number `n` (0-based).
pub fn retry_delay(n: u32) -> Duration {
    FIRST_RETRY + RETRY_INCREMENT * n
}

/// Calls the webhook with `request` and interprets the answer, retrying as DPS does. The body is
/// written with its keys in order, as it always has been. `sleep` waits between tries (tests pass a
/// clock that does not wait).
pub async fn allocate_by_webhook<F, Fut>(
    webhook: &dyn AllocationWebhook,
    url: &str,
    request: &CustomAllocationRequest,
    sleep: F,
) -> Result<WebhookAnswer, DpsError>
where
    F: Fn(Duration) -> Fut,
    Fut: Future<Output = ()>,
{
    let body = serde_json::to_vec(&serde_json::to_value(request)?)?;
    let mut attempt = 0;
    loop {
        let outcome = webhook.post(url, body.clone(), CALL_TIMEOUT).await;
        let retryable = match &outcome {
            Ok((status, _)) => *status >= 429,
            Err(_) => true,
        };
        if retryable && attempt < RETRIES {
            tracing::info!(target: "DeviceOperations", url = %redact(url), attempt, outcome = ?outcome.as_ref().map(|(s, _)| *s), "custom allocation webhook: retrying");
            sleep(retry_delay(attempt)).await;
            attempt += 1;
            continue;
        }
        return interpret(outcome);
    }
}

/// The webhook's URL without its query string (which holds the function key), for logs.
fn redact(url: &str) -> &str {
    url.split_once('?').map_or(url, |(u, _)| u)
}

fn interpret(outcome: WebhookResult) -> Result<WebhookAnswer, DpsError> {
    let (status, body) = outcome.map_err(|e| {
        DpsError::CustomAllocationFailed(format!(
            "Custom allocation failed: the webhook could not be called: {e}"
        ))
    })?;
    match status {
        200..=299 => {
            let answer: WebhookAnswer = serde_json::from_slice(&body).map_err(|e| {
                DpsError::CustomAllocationFailed(format!(
                    "Custom allocation failed: the webhook's answer is not valid JSON: {e}"
                ))
            })?;
            // Its payload and initial twin are stored with the registration.
            if serde_json::from_slice::<serde_json::Value>(&body)
                .is_ok_and(|v| ironhub_hub::nul::contains_nul(&v))
            {
                return Err(DpsError::CustomAllocationFailed(format!(
                    "Custom allocation failed: {}",
                    ironhub_hub::nul::nul_message("the webhook's answer")
                )));
            }
            if answer
                .iot_hub_host_name
                .as_deref()
                .is_none_or(|h| h.trim().is_empty())
            {
                return Err(DpsError::CustomAllocationIotHubNotSpecified(
                    "Custom allocation failed: the webhook's answer has no iotHubHostName.".into(),
                ));
            }
            Ok(answer)
        }
        401 => Err(DpsError::CustomAllocationUnauthorizedAccess(
            "Custom allocation failed with status code: 401".into(),
        )),
        s => Err(DpsError::CustomAllocationFailed(format!(
            "Custom allocation failed with status code: {s}"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::DeviceRuntimeContext;
    use std::sync::Mutex;

    #[derive(Debug)]
    struct Scripted(Mutex<Vec<WebhookResult>>);

    #[async_trait]
    impl AllocationWebhook for Scripted {
        async fn post(&self, _url: &str, _body: Vec<u8>, _t: Duration) -> WebhookResult {
            let mut answers = self.0.lock().unwrap_or_else(|e| e.into_inner());
            if answers.len() > 1 {
                answers.remove(0)
            } else {
                answers[0].clone()
            }
        }
    }

    fn scripted(answers: Vec<WebhookResult>) -> Scripted {
        Scripted(Mutex::new(answers))
    }

    async fn run(answers: Vec<WebhookResult>) -> (Result<WebhookAnswer, DpsError>, Vec<Duration>) {
        let hook = scripted(answers);
        let waits = Mutex::new(Vec::new());
        let request = CustomAllocationRequest {
            individual_enrollment: None,
            enrollment_group: None,
            device_runtime_context: DeviceRuntimeContext::default(),
            linked_hubs: Vec::new(),
        };
        let result = allocate_by_webhook(&hook, "http://h/api?code=secret", &request, |d| {
            waits.lock().unwrap_or_else(|e| e.into_inner()).push(d);
            async {}
        })
        .await;
        (result, waits.into_inner().unwrap_or_default())
    }

    fn ok(body: &str) -> WebhookResult {
        Ok((200, body.as_bytes().to_vec()))
    }

    #[tokio::test]
    async fn outcomes_follow_the_troubleshooting_table() {
        let (r, waits) = run(vec![ok(
            r#"{"iotHubHostName":"hub1","payload":{"a":1},"initialTwin":{"tags":{"t":1}}}"#,
        )])
        .await;
        let answer = r.unwrap();
        assert_eq!(answer.iot_hub_host_name.as_deref(), Some("hub1"));
        assert_eq!(answer.payload, Some(serde_json::json!({"a": 1})));
        assert!(answer.initial_twin.unwrap().tags.is_some());
        assert!(waits.is_empty());

        for body in [
            r#"{"iotHubHostName":""}"#,
            r#"{"iotHubHostName":null}"#,
            "{}",
        ] {
            let (r, _) = run(vec![ok(body)]).await;
            assert_eq!(r.unwrap_err().code(), 400_208, "{body}");
        }
        let (r, _) = run(vec![Ok((401, Vec::new()))]).await;
        assert_eq!(r.unwrap_err().code(), 400_209);
        let (r, waits) = run(vec![Ok((
            400,
            b"Unrecognized device registration.".to_vec(),
        ))])
        .await;
        let e = r.unwrap_err();
        assert_eq!(e.code(), 400_207);
        assert_eq!(
            e.to_string(),
            "Custom allocation failed with status code: 400"
        );
        assert!(waits.is_empty(), "a 400 is not retried");
    }

    #[tokio::test]
    async fn statuses_of_429_and_more_are_retried_ten_times() {
        let (r, waits) = run(vec![
            Ok((503, Vec::new())),
            Ok((429, Vec::new())),
            ok(r#"{"iotHubHostName":"hub2"}"#),
        ])
        .await;
        assert_eq!(r.unwrap().iot_hub_host_name.as_deref(), Some("hub2"));
        assert_eq!(waits, vec![Duration::from_secs(1), Duration::from_secs(10)]);

        let (r, waits) = run(vec![Ok((500, Vec::new()))]).await;
        assert_eq!(r.unwrap_err().code(), 400_207);
        assert_eq!(waits.len(), 10);
        assert_eq!(waits[9], Duration::from_secs(82));

        let (r, waits) = run(vec![Err("connection refused".into())]).await;
        assert_eq!(r.unwrap_err().code(), 400_207);
        assert_eq!(waits.len(), 10);
    }

    #[test]
    fn the_function_key_stays_out_of_logs() {
        assert_eq!(
            redact("https://f.example/api/Alloc?code=KEY"),
            "https://f.example/api/Alloc"
        );
    }
}
