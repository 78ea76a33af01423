//! DPS's device registration API over AMQP, as the provisioning SDKs' AMQP transports speak it
//! (azure-iot-sdk-node, `provisioning/transport/amqp`; azure-iot-sdk-csharp,
//! `ProvisioningTransportHandlerAmqp`), on the same endpoints as IoT Hub's (5671, and
//! WebSocket on 443):
//!
//! - the device logs in with SASL PLAIN, user name `{idScope}/registrations/{registrationId}`
//!   and a DPS SAS token as the password (`sasl.rs`), or with its TLS client certificate;
//! - it attaches a receiver and a sender to `{idScope}/registrations/{registrationId}`, with
//!   `com.microsoft:api-version` among the link properties;
//! - each request is a message with the application property `iotdps-operation-type`
//!   (`iotdps-register`, body `{"registrationId", "payload"}`; `iotdps-get-operationstatus`
//!   with `iotdps-operation-id`; `iotdps-get-registration`) and a correlation id;
//! - an answer (DPS's 200 or 202) is accepted and then sent on the device's receiver: the same
//!   correlation id, the JSON body of the HTTPS answer as one data section, and `retry-after`
//!   when DPS says when to come back (as `retry-after`, which the Node SDK reads, and
//!   `Retry-After`, which the .NET SDK reads);
//! - a refusal rejects the request: the condition by the status (`amqp:unauthorized-access`,
//!   `amqp:not-found`, throttling, `amqp:internal-error`, …), DPS's JSON error body as the
//!   description (the .NET SDK parses it for `errorCode`), and `retry-after` in the error's info
//!   for a status of 429 or more (both SDKs retry those after it).
//!
//! The device attests on every request with the credentials of its connection, as over MQTT:
//! the request, its checks and its answer are the domain's (`ironhub_dps::device_api`).

use fe2o3_amqp::types::definitions::{Error, Fields};
use fe2o3_amqp::types::messaging::{ApplicationProperties, Body, Data, Message, Properties};
use fe2o3_amqp::types::primitives::{Binary, OrderedMap, SimpleValue, Symbol, Value};
use ironhub_auth::Credentials;
use ironhub_dps::device_api::{
    AnswerBody, DeviceAnswer, DeviceOperation, DeviceRequest, RequestBody, Transport,
};
use ironhub_dps::{Dps, DpsError};

use crate::errors::status_condition;
use crate::message::{body_bytes, text_property};

const OPERATION_TYPE: &str = "iotdps-operation-type";
const OPERATION_ID: &str = "iotdps-operation-id";
const REGISTER: &str = "iotdps-register";
const OPERATION_STATUS: &str = "iotdps-get-operationstatus";
const REGISTRATION: &str = "iotdps-get-registration";
/// The link property naming the API version the device speaks.
const API_VERSION: &str = "com.microsoft:api-version";
/// The names `retry-after` goes by: the Node SDK's, then the .NET SDK's.
const RETRY_AFTER: [&str; 2] = ["retry-after", "Retry-After"];

/// The answer message of an accepted request.
pub type Answer = Message<Data>;

/// A device's registration, as its links name it, and what its connection presented.
#[derive(Debug, Clone)]
pub struct Registration<'a> {
    pub dps: &'a Dps,
    pub scope: &'a str,
    pub registration_id: &'a str,
    /// The SAS token of the connection's PLAIN login.
    pub token: Option<&'a str>,
    /// The TLS client certificate chain (DER, leaf first).
    pub certificates: &'a [Vec<u8>],
    /// `com.microsoft:api-version` of the link the request came on.
    pub api_version: Option<&'a str>,
}

impl Registration<'_> {
    /// The answer to `request`, or the error the request is rejected with.
    pub async fn answer(&self, request: &Message<Body<Value>>) -> Result<Answer, Error> {
        let answer = match self.device_request(request) {
            Ok((operation, body)) => {
                let request = DeviceRequest {
                    transport: Transport::Amqp,
                    id_scope: self.scope,
                    registration_id: self.registration_id,
                    operation,
                    credentials: Credentials::new(self.token, self.certificates),
                    body: RequestBody::Bytes(&body),
                    api_version: self.api_version,
                };
                self.dps.device_request(&request).await
            }
            Err(e) => self.dps.error_answer(&e),
        };
        render(answer, request)
    }

    /// What `request` asks for, and its body.
    fn device_request<'m>(
        &self,
        request: &'m Message<Body<Value>>,
    ) -> Result<(DeviceOperation<'m>, Vec<u8>), DpsError> {
        let operation = match text_property(request, OPERATION_TYPE).as_deref() {
            Some(REGISTER) => DeviceOperation::Register,
            Some(OPERATION_STATUS) => DeviceOperation::OperationStatus {
                operation_id: str_property(request, OPERATION_ID).unwrap_or_default(),
            },
            Some(REGISTRATION) => DeviceOperation::RegistrationStatus,
            other => {
                return Err(DpsError::BadRequest(format!(
                    "The request's {OPERATION_TYPE} is {}; DPS knows {REGISTER}, \
                     {OPERATION_STATUS} and {REGISTRATION}.",
                    other.map_or_else(|| "missing".to_owned(), |o| format!("'{o}'"))
                )));
            }
        };
        // Only a registration reads the body (the status requests carry the operation's name).
        let body = match operation {
            DeviceOperation::OperationStatus { .. } => Vec::new(),
            _ => body_bytes(&request.body).map_err(|e| DpsError::BadRequest(e.to_string()))?,
        };
        Ok((operation, body))
    }
}

/// A string application property, borrowed.
fn str_property<'m>(message: &'m Message<Body<Value>>, name: &str) -> Option<&'m str> {
    match message.application_properties.as_ref()?.0.get(name)? {
        SimpleValue::String(s) => Some(s),
        SimpleValue::Symbol(s) => Some(s.as_str()),
        _ => None,
    }
}

/// `com.microsoft:api-version` of a link's attach properties.
pub fn api_version(properties: Option<&Fields>) -> Option<String> {
    match properties?.get(&Symbol::from(API_VERSION))? {
        Value::String(s) => Some(s.clone()),
        Value::Symbol(s) => Some(s.as_str().to_owned()),
        _ => None,
    }
}

/// A domain answer in AMQP's words: an answer message for 200 and 202, a rejection otherwise.
fn render(answer: DeviceAnswer, request: &Message<Body<Value>>) -> Result<Answer, Error> {
    let body = answer.body.to_json();
    if !matches!(answer.status, 200 | 202) || matches!(answer.body, AnswerBody::Error(_)) {
        let info = answer.retry_after.map(|seconds| {
            let mut info = OrderedMap::new();
            for name in RETRY_AFTER {
                info.insert(Symbol::from(name), Value::Uint(seconds));
            }
            info
        });
        let description = String::from_utf8_lossy(&body).into_owned();
        return Err(Error::new(
            status_condition(answer.status),
            Some(description),
            info,
        ));
    }
    let correlation_id = request
        .properties
        .as_ref()
        .and_then(|p| p.correlation_id.clone().or_else(|| p.message_id.clone()));
    let mut application = ApplicationProperties::default();
    if let Some(seconds) = answer.retry_after {
        for name in RETRY_AFTER {
            application.insert(name.to_owned(), SimpleValue::Uint(seconds));
        }
    }
    Ok(Message {
        header: None,
        delivery_annotations: None,
        message_annotations: None,
        properties: Some(Properties {
            correlation_id,
            content_type: Some(Symbol::from("application/json")),
            content_encoding: Some(Symbol::from("utf-8")),
            ..Properties::default()
        }),
        application_properties: Some(application),
        body: Data(Binary::from(body)),
        footer: None,
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use std::sync::Arc;

    use fe2o3_amqp::types::definitions::{AmqpError, ErrorCondition};
    use fe2o3_amqp::types::messaging::{AmqpValue, Batch, MessageId};
    use ironhub_dps::model::{
        IndividualEnrollment, RegistrationOperationStatus, RegistrationStatus,
    };
    use serde_json::json;

    use super::*;

    async fn dps() -> (Dps, tempfile::TempDir) {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(ironhub_embedded::SqliteStore::open(dir.path()).unwrap());
        let dps = Dps::open(store, vec!["dps.example".into()], None)
            .await
            .unwrap();
        (dps, dir)
    }

    fn request(
        operation: &str,
        operation_id: Option<&str>,
        body: Body<Value>,
    ) -> Message<Body<Value>> {
        let mut application = ApplicationProperties::default();
        application.insert(OPERATION_TYPE.into(), SimpleValue::String(operation.into()));
        if let Some(id) = operation_id {
            application.insert(OPERATION_ID.into(), SimpleValue::String(id.into()));
        }
        Message::builder()
            .properties(
                Properties::builder()
                    .correlation_id(MessageId::String("c-1".into()))
                    .build(),
            )
            .application_properties(application)
            .body(body)
            .build()
    }

    fn data(json: &serde_json::Value) -> Body<Value> {
        Body::Data(Batch::new(vec![Data(Binary::from(
            serde_json::to_vec(json).unwrap(),
        ))]))
    }

    fn token(dps: &Dps, registration_id: &str, key: &str) -> String {
        let resource = format!("{}/registrations/{registration_id}", dps.id_scope());
        ironhub_auth::sas::generate(
            &resource,
            key,
            ironhub_auth::unix_now() + 600,
            Some("registration"),
        )
        .unwrap()
    }

    fn retry_after(answer: &Answer) -> Option<SimpleValue> {
        answer
            .application_properties
            .as_ref()
            .and_then(|p| p.get("retry-after").cloned())
    }

    #[tokio::test]
    async fn a_registration_is_answered_on_the_request_s_correlation_id_and_a_refusal_rejects() {
        let (dps, _dir) = dps().await;
        let key = ironhub_auth::generate_key(32);
        let enrollment: IndividualEnrollment = serde_json::from_value(json!({
            "registrationId": "dev-1",
            "attestation": {"type": "symmetricKey",
                            "symmetricKey": {"primaryKey": key, "secondaryKey": key}},
        }))
        .unwrap();
        dps.create_or_update("dev-1", enrollment, None)
            .await
            .unwrap();
        let sas = token(&dps, "dev-1", &key);
        let device = Registration {
            dps: &dps,
            scope: dps.id_scope(),
            registration_id: "dev-1",
            token: Some(&sas),
            certificates: &[],
            api_version: Some("2019-03-31"),
        };

        let register = request(REGISTER, None, data(&json!({"registrationId": "dev-1"})));
        let answer = device.answer(&register).await.unwrap();
        let properties = answer.properties.as_ref().unwrap();
        assert_eq!(
            properties.correlation_id,
            Some(MessageId::String("c-1".into()))
        );
        let op: RegistrationOperationStatus = serde_json::from_slice(&answer.body.0).unwrap();
        assert_eq!(op.status, RegistrationStatus::Assigning);
        assert!(matches!(retry_after(&answer), Some(SimpleValue::Uint(_))));

        // The poll carries the operation's name as its body (the .NET SDK), or nothing.
        let poll = request(
            OPERATION_STATUS,
            Some(&op.operation_id),
            Body::Value(AmqpValue(Value::String(OPERATION_STATUS.into()))),
        );
        let polled = device.answer(&poll).await.unwrap();
        let polled: RegistrationOperationStatus = serde_json::from_slice(&polled.body.0).unwrap();
        assert_eq!(polled.operation_id, op.operation_id);

        // A wrong key: rejected as unauthorized, DPS's error body as the description.
        let wrong = token(&dps, "dev-1", &ironhub_auth::generate_key(32));
        let refused = Registration {
            token: Some(&wrong),
            ..device.clone()
        }
        .answer(&register)
        .await
        .unwrap_err();
        assert_eq!(
            refused.condition,
            ErrorCondition::from(AmqpError::UnauthorizedAccess)
        );
        let body: serde_json::Value =
            serde_json::from_str(refused.description.as_deref().unwrap()).unwrap();
        assert_eq!(body["errorCode"], 401002);
        assert!(refused.info.is_none());

        // An unknown operation and a body that is not a registration: 400s.
        for bad in [
            request("iotdps-delete", None, Body::Empty),
            request(REGISTER, None, data(&json!(["not", "a", "registration"]))),
        ] {
            let refused = device.answer(&bad).await.unwrap_err();
            let body: serde_json::Value =
                serde_json::from_str(refused.description.as_deref().unwrap()).unwrap();
            assert_eq!(body["errorCode"].as_u64().unwrap() / 1000, 400, "{body}");
        }
    }

    #[test]
    fn an_error_of_429_or_more_says_when_to_come_back_in_its_info() {
        let answer = DeviceAnswer {
            status: 429,
            body: AnswerBody::Error(DpsError::Throttled(String::new(), Some(3)).body()),
            retry_after: Some(3),
            error_code: Some(429_001),
        };
        let rejected = render(answer, &request(REGISTER, None, Body::Empty)).unwrap_err();
        assert_eq!(
            rejected.condition,
            ErrorCondition::Custom(Symbol::from("com.microsoft:device-container-throttled"))
        );
        let info = rejected.info.unwrap();
        for name in RETRY_AFTER {
            assert_eq!(info.get(&Symbol::from(name)), Some(&Value::Uint(3)));
        }
    }

    #[test]
    fn the_link_s_api_version() {
        let mut fields = Fields::new();
        fields.insert(
            Symbol::from(API_VERSION),
            Value::String("2019-03-31".into()),
        );
        assert_eq!(api_version(Some(&fields)).as_deref(), Some("2019-03-31"));
        assert_eq!(api_version(None), None);
    }
}
