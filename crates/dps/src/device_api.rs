//! The device registration API, handled once for every transport (`docs/protocol/dps-json.md`
//! §1–§3; Azure docs, "Communicate with DPS using the MQTT protocol"): the adapters turn their
//! wire into a [`DeviceRequest`] (credentials, ids, body bytes, api-version) and a
//! [`DeviceAnswer`] back into their wire (an HTTP status and `Retry-After` header, or a
//! `$dps/registrations/res/{status}/?$rid=…&retry-after=…` topic). The size limit, parsing,
//! attestation, error bodies and `retry-after` rule live here.
//!
//! `retry-after` follows one rule on every transport: an `assigning` answer (202) and every
//! answer with a status of 429 or more carry it. The provisioning SDKs treat any status ≥ 429
//! as "try again later" and wait the `retry-after` they are given, else a default of their own
//! (azure-iot-sdk-python, `provisioning/pipeline/pipeline_stages_provisioning.py`,
//! `_process_retry_status_code`; azure-iot-sdk-node, `provisioning/transport/mqtt/src/mqtt.ts`
//! and `provisioning/transport/http/src/http.ts`, whose REST client reports a status ≥ 300 as
//! an error before that branch is reached): so a 500 says when to come back as a 429 does.

use ironhub_auth::Credentials;
use ironhub_wire::error::ErrorBody;

use crate::attestation::Attested;
use crate::model::{
    DeviceRegistration, DeviceRegistrationState, RegistrationOperationStatus, RegistrationStatus,
    TpmChallenge,
};
use crate::{Dps, DpsError};

/// The transport a device request came over: what it can carry differs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    Https,
    Mqtt,
    /// AMQP 1.0: requests on the `{idScope}/registrations/{registrationId}` links.
    Amqp,
}

impl Transport {
    /// Whether TPM attestation's challenge can be answered on it: not over MQTT (Azure docs,
    /// "Communicate with DPS using the MQTT protocol", the note at its start), where a TPM key
    /// in the body is ignored and the device attests by its CONNECT's credentials; nor over
    /// AMQP, where the challenge is the `TPM` SASL mechanism's ([`Dps::tpm_challenge`] and
    /// [`Dps::attest_symmetric_key`] before the connection opens) and requests come with the
    /// token it ended with.
    fn carries_tpm(self) -> bool {
        matches!(self, Transport::Https)
    }
}

/// What the device asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeviceOperation<'a> {
    /// Register (`PUT …/register`, MQTT `PUT/iotdps-register`).
    Register,
    /// Poll a registration operation (`GET …/operations/{id}`, MQTT
    /// `GET/iotdps-get-operationstatus`).
    OperationStatus { operation_id: &'a str },
    /// The registration status lookup (`POST /{idScope}/registrations/{id}`, HTTPS only).
    RegistrationStatus,
}

/// The request body as the transport read it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RequestBody<'a> {
    Bytes(&'a [u8]),
    /// The transport stopped reading it past [`crate::Limits::max_message_bytes`].
    TooLarge,
}

/// One device request, transport-neutral.
#[derive(Debug, Clone)]
pub struct DeviceRequest<'a> {
    pub transport: Transport,
    pub id_scope: &'a str,
    pub registration_id: &'a str,
    pub operation: DeviceOperation<'a>,
    /// The SAS token (HTTP `Authorization`, MQTT password) and TLS client certificate chain.
    pub credentials: Credentials<'a>,
    pub body: RequestBody<'a>,
    /// `api-version` of the query string or MQTT username (it picks the reprovisioning default).
    pub api_version: Option<&'a str>,
}

/// What an answer carries (each serializes to DPS's JSON).
#[derive(Debug, Clone, PartialEq)]
pub enum AnswerBody {
    Operation(RegistrationOperationStatus),
    Registration(Box<DeviceRegistrationState>),
    /// TPM attestation's first step (with status 401).
    TpmChallenge(TpmChallenge),
    Error(ErrorBody),
}

impl AnswerBody {
    /// The body's JSON bytes.
    pub fn to_json(&self) -> Vec<u8> {
        let json = match self {
            AnswerBody::Operation(op) => serde_json::to_vec(op),
            AnswerBody::Registration(state) => serde_json::to_vec(state),
            AnswerBody::TpmChallenge(challenge) => serde_json::to_vec(challenge),
            AnswerBody::Error(error) => serde_json::to_vec(error),
        };
        json.unwrap_or_default()
    }
}

/// The answer to a device request, transport-neutral.
#[derive(Debug, Clone, PartialEq)]
pub struct DeviceAnswer {
    /// The HTTP status (MQTT puts it in the response topic).
    pub status: u16,
    pub body: AnswerBody,
    /// Seconds the device waits before its next request, when DPS says.
    pub retry_after: Option<u32>,
    /// DPS's `errorCode` of an error answer (HTTPS sends it as `x-ms-error-code`).
    pub error_code: Option<u32>,
}

impl DeviceAnswer {
    /// Where the device polls a register request's operation (HTTPS's `Location`).
    pub fn location(&self, request: &DeviceRequest<'_>) -> Option<String> {
        match (&self.body, request.operation) {
            (AnswerBody::Operation(op), DeviceOperation::Register) => Some(format!(
                "/{}/registrations/{}/operations/{}",
                request.id_scope, request.registration_id, op.operation_id
            )),
            _ => None,
        }
    }
}

/// Why a transport that reads the body when asked ([`Dps::device_request_reading`]) has none
/// to give.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unread {
    /// It stopped reading past [`crate::Limits::max_message_bytes`].
    TooLarge,
    /// The body did not arrive within the transport's read timeout.
    TimedOut,
}

impl Dps {
    /// Handles a device request and answers it: attests the device by its credentials, reads
    /// the body, and registers, polls or looks up. Never fails: a refusal is an answer with
    /// DPS's error body.
    pub async fn device_request(&self, request: &DeviceRequest<'_>) -> DeviceAnswer {
        let body = match request.body {
            RequestBody::Bytes(bytes) => Ok(bytes),
            RequestBody::TooLarge => Err(Unread::TooLarge),
        };
        self.device_request_reading(request, std::future::ready(body))
            .await
    }

    /// [`Dps::device_request`] for a transport that reads the body only when the domain asks
    /// for it (HTTPS): `read_body` is awaited once the request's credentials, when it presents
    /// any, were checked, so a client that cannot authenticate is refused before its body is
    /// read. A request with no credentials at all is read first: its body may carry a TPM's
    /// keys (the TPM challenge), and a malformed one is a 400 whoever sent it. `request.body`
    /// is not looked at.
    pub async fn device_request_reading<B: AsRef<[u8]>>(
        &self,
        request: &DeviceRequest<'_>,
        read_body: impl Future<Output = Result<B, Unread>>,
    ) -> DeviceAnswer {
        match self.answer(request, read_body).await {
            Ok(answer) => answer,
            Err(e) => {
                tracing::info!(target: "DeviceOperations", scope = request.id_scope, registration_id = request.registration_id, transport = ?request.transport, error = %e, "device request refused");
                self.error_answer(&e)
            }
        }
    }

    /// The answer to an error, with its `retry-after` when the status is 429 or more (for an
    /// adapter that refuses a request before the domain sees it).
    pub fn error_answer(&self, e: &DpsError) -> DeviceAnswer {
        DeviceAnswer {
            status: e.status(),
            body: AnswerBody::Error(e.body()),
            retry_after: (e.status() >= 429).then(|| self.retry_after(Some(e))),
            error_code: Some(e.code()),
        }
    }

    async fn answer<B: AsRef<[u8]>>(
        &self,
        request: &DeviceRequest<'_>,
        read_body: impl Future<Output = Result<B, Unread>>,
    ) -> Result<DeviceAnswer, DpsError> {
        let credentials = &request.credentials;
        let presents_credentials = credentials.token.is_some() || !credentials.chain.is_empty();
        match request.operation {
            DeviceOperation::Register => {
                let attested = match presents_credentials {
                    true => Some(self.attest_counted(request).await?),
                    false => None,
                };
                let body = read_body.await;
                let registration = self.registration_body(body.as_ref().map(AsRef::as_ref))?;
                let attested = match attested {
                    Some(attested) => attested,
                    None => {
                        if let Some(tpm) = registration
                            .tpm
                            .as_ref()
                            .filter(|_| request.transport.carries_tpm())
                        {
                            let key = self
                                .tpm_challenge(request.id_scope, request.registration_id, tpm)
                                .await?;
                            return Ok(tpm_challenge_answer(key));
                        }
                        // Nothing to attest with: the 401 (or the unknown scope's 404).
                        self.attest_counted(request).await?
                    }
                };
                let op = self
                    .register(attested, registration, request.api_version)
                    .await?;
                Ok(self.operation_answer(op))
            }
            DeviceOperation::OperationStatus { operation_id } => {
                self.attest(request).await?;
                let op = self
                    .operation_status(request.registration_id, operation_id)
                    .await?;
                Ok(self.operation_answer(op))
            }
            DeviceOperation::RegistrationStatus => {
                self.attest(request).await?;
                self.registration_body(read_body.await.as_ref().map(AsRef::as_ref))?;
                let state = self
                    .device_registration_status(request.registration_id)
                    .await?;
                Ok(DeviceAnswer {
                    status: 200,
                    body: AnswerBody::Registration(Box::new(state)),
                    retry_after: None,
                    error_code: None,
                })
            }
        }
    }

    /// An operation's answer: 202 with `retry-after` while assigning (a register request's
    /// always is), 200 once it ended.
    fn operation_answer(&self, op: RegistrationOperationStatus) -> DeviceAnswer {
        let assigning = op.status == RegistrationStatus::Assigning;
        DeviceAnswer {
            status: if assigning { 202 } else { 200 },
            body: AnswerBody::Operation(op),
            retry_after: assigning.then(|| self.retry_after(None)),
            error_code: None,
        }
    }

    /// The device's registration request: at most `max_message_bytes` (96 KB: Azure docs,
    /// "What is Azure IoT Hub Device Provisioning Service?", "Quotas and limits"); an empty
    /// body is an empty request.
    fn registration_body(
        &self,
        body: Result<&[u8], &Unread>,
    ) -> Result<DeviceRegistration, DpsError> {
        let limit = self.limits().max_message_bytes;
        let bytes = match body {
            Ok(b) if b.len() <= limit => b,
            Err(Unread::TimedOut) => {
                return Err(DpsError::RequestTimeout(
                    "The request's body did not arrive in time.".into(),
                ));
            }
            _ => {
                return Err(DpsError::MessageTooLarge(format!(
                    "The request is larger than {limit} bytes, the most DPS accepts."
                )));
            }
        };
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Ok(DeviceRegistration::default());
        }
        serde_json::from_slice(bytes).map_err(|e| {
            DpsError::BadRequest(format!(
                "The body is not a valid device registration (JSON with registrationId): {e}."
            ))
        })
    }

    /// Attests the device behind a request: by its SAS token, else by its client certificate.
    pub(crate) async fn attest(&self, request: &DeviceRequest<'_>) -> Result<Attested, DpsError> {
        let (scope, id) = (request.id_scope, request.registration_id);
        let credentials = &request.credentials;
        match credentials.token {
            Some(token) => self.attest_symmetric_key(scope, id, token).await,
            None if !credentials.chain.is_empty() => {
                self.attest_x509(scope, id, &credentials.chain).await
            }
            None => {
                self.check_id_scope(scope)?;
                Err(DpsError::Unauthorized(
                    "Unauthorized: the request has neither a SAS token nor a client certificate."
                        .into(),
                ))
            }
        }
    }
}

/// TPM attestation's first step: 401 with the key the device's TPM imports.
fn tpm_challenge_answer(authentication_key: String) -> DeviceAnswer {
    DeviceAnswer {
        status: 401,
        body: AnswerBody::TpmChallenge(TpmChallenge {
            authentication_key,
            key_name: "registration".into(),
            message: "Sign a SAS token with the key in authenticationKey, once your TPM \
                      imported it, and register again with it."
                .into(),
        }),
        retry_after: None,
        error_code: None,
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use std::sync::Arc;

    use super::*;

    #[tokio::test]
    async fn every_status_from_429_says_when_to_come_back() {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(ironhub_embedded::SqliteStore::open(dir.path()).unwrap());
        let dps = Dps::open(store, vec!["dps.example".into()], None)
            .await
            .unwrap();
        let cases = [
            (DpsError::BadRequest(String::new()), None),
            (DpsError::Unauthorized(String::new()), None),
            (DpsError::MessageTooLarge(String::new()), None),
            (DpsError::Throttled(String::new(), None), Some(10)),
            (DpsError::Throttled(String::new(), Some(3)), Some(3)),
            (DpsError::ServerError(String::new()), Some(2)),
        ];
        for (e, retry_after) in cases {
            let answer = dps.error_answer(&e);
            assert_eq!(answer.status, e.status());
            assert_eq!(answer.retry_after, retry_after, "{e:?}");
            assert_eq!(answer.error_code, Some(e.code()));
        }
    }
}
