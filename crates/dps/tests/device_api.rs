//! The device registration API as both transports see it: one request in, one answer out,
//! with the size limit, parsing, attestation, error bodies and the `retry-after` rule.
#![allow(clippy::unwrap_used)]

mod common;

use common::{KEY, SCOPE, setup};
use ironhub_auth::sas::generate;
use ironhub_auth::{Credentials, unix_now};
use ironhub_dps::device_api::{
    AnswerBody, DeviceAnswer, DeviceOperation, DeviceRequest, RequestBody, Transport, Unread,
};
use ironhub_dps::model::{IndividualEnrollment, RegistrationStatus};
use ironhub_dps::{Dps, Limits};
use serde_json::{Value, json};

const BOTH: [Transport; 2] = [Transport::Https, Transport::Mqtt];
const NO_CHAIN: [Vec<u8>; 0] = [];

fn token(registration_id: &str) -> String {
    generate(
        &format!("{SCOPE}/registrations/{registration_id}"),
        KEY,
        unix_now() + 3600,
        Some("registration"),
    )
    .unwrap()
}

async fn enroll(dps: &Dps, id: &str) {
    let e: IndividualEnrollment = serde_json::from_value(json!({
        "registrationId": id,
        "attestation": {"type": "symmetricKey",
            "symmetricKey": {"primaryKey": KEY, "secondaryKey": KEY}},
    }))
    .unwrap();
    dps.create_or_update(id, e, None).await.unwrap();
}

fn request<'a>(
    transport: Transport,
    id: &'a str,
    token: Option<&'a str>,
    operation: DeviceOperation<'a>,
    body: RequestBody<'a>,
) -> DeviceRequest<'a> {
    DeviceRequest {
        transport,
        id_scope: SCOPE,
        registration_id: id,
        operation,
        credentials: Credentials::new(token, &NO_CHAIN),
        body,
        api_version: Some("2019-03-31"),
    }
}

fn json_of(answer: &DeviceAnswer) -> Value {
    serde_json::from_slice(&answer.body.to_json()).unwrap()
}

#[tokio::test]
async fn a_register_request_is_answered_assigning_with_retry_after_on_both_transports() {
    let s = setup().await;
    enroll(&s.dps, "dev-r").await;
    let t = token("dev-r");
    for transport in BOTH {
        let body = RequestBody::Bytes(br#"{"registrationId":"dev-r"}"#);
        let r = request(
            transport,
            "dev-r",
            Some(&t),
            DeviceOperation::Register,
            body,
        );
        let answer = s.dps.device_request(&r).await;
        assert_eq!(answer.status, 202, "{transport:?}");
        assert_eq!(answer.retry_after, Some(2));
        assert_eq!(answer.error_code, None);
        let AnswerBody::Operation(op) = &answer.body else {
            panic!("{answer:?}")
        };
        assert_eq!(op.status, RegistrationStatus::Assigning);
        assert_eq!(
            answer.location(&r),
            Some(format!(
                "/{SCOPE}/registrations/dev-r/operations/{}",
                op.operation_id
            ))
        );
        assert_eq!(json_of(&answer)["status"], "assigning");
    }
}

#[tokio::test]
async fn bad_requests_get_dps_error_bodies_and_no_retry_after() {
    let s = setup().await;
    enroll(&s.dps, "dev-e").await;
    let t = token("dev-e");
    let big = vec![b' '; s.dps.limits().max_message_bytes + 1];
    for transport in BOTH {
        let cases = [
            // Too large, as read by the transport or as given whole: 413.
            (Some(t.as_str()), RequestBody::TooLarge, 413, 413_001),
            (Some(t.as_str()), RequestBody::Bytes(&big), 413, 413_001),
            // Not JSON: 400, before (and without) any credential.
            (None, RequestBody::Bytes(b"{not json"), 400, 400_004),
            // A body naming another device: 400.
            (
                Some(t.as_str()),
                RequestBody::Bytes(br#"{"registrationId":"other"}"#),
                400,
                400_004,
            ),
            // Nothing to attest with, or a token that does not verify: 401.
            (None, RequestBody::Bytes(b""), 401, 401_002),
            (
                Some("SharedAccessSignature sr=x&sig=y&se=1"),
                RequestBody::Bytes(b""),
                401,
                401_002,
            ),
        ];
        for (token, body, status, code) in cases {
            let r = request(transport, "dev-e", token, DeviceOperation::Register, body);
            let answer = s.dps.device_request(&r).await;
            assert_eq!(answer.status, status, "{transport:?} {answer:?}");
            assert_eq!(answer.error_code, Some(code));
            assert_eq!(answer.retry_after, None);
            assert_eq!(answer.location(&r), None);
            let body = json_of(&answer);
            assert_eq!(body["errorCode"], code);
            assert!(body["trackingId"].is_string() && body["message"].is_string());
        }
    }
    // An unknown ID scope is a 404 even with nothing to attest with.
    let mut r = request(
        Transport::Https,
        "dev-e",
        None,
        DeviceOperation::Register,
        RequestBody::Bytes(b""),
    );
    r.id_scope = "0ne99999999";
    assert_eq!(s.dps.device_request(&r).await.status, 404);
}

#[tokio::test]
async fn throttled_polls_carry_retry_after_on_both_transports() {
    let s = setup().await;
    let dps = s.dps.clone().with_limits(Limits {
        polls_per_window: 1,
        ..Limits::default()
    });
    for (transport, id) in BOTH.into_iter().zip(["dev-t1", "dev-t2"]) {
        enroll(&dps, id).await;
        let t = token(id);
        let register = request(
            transport,
            id,
            Some(&t),
            DeviceOperation::Register,
            RequestBody::Bytes(b""),
        );
        let AnswerBody::Operation(op) = dps.device_request(&register).await.body else {
            panic!("not an operation")
        };
        let poll = request(
            transport,
            id,
            Some(&t),
            DeviceOperation::OperationStatus {
                operation_id: &op.operation_id,
            },
            RequestBody::Bytes(b""),
        );
        let first = dps.device_request(&poll).await;
        assert!([200, 202].contains(&first.status), "{first:?}");
        let throttled = dps.device_request(&poll).await;
        assert_eq!(throttled.status, 429, "{transport:?}");
        assert_eq!(throttled.retry_after, Some(10));
        assert_eq!(throttled.error_code, Some(429_001));
    }
}

#[tokio::test]
async fn a_tpm_challenge_is_only_given_over_https() {
    let s = setup().await;
    let body =
        br#"{"registrationId":"dev-tpm","tpm":{"endorsementKey":"AAAA","storageRootKey":"AAAA"}}"#;
    // Over MQTT and AMQP the TPM keys are ignored: the device has nothing else to attest with.
    for transport in [Transport::Mqtt, Transport::Amqp] {
        let r = request(
            transport,
            "dev-tpm",
            None,
            DeviceOperation::Register,
            RequestBody::Bytes(body),
        );
        let answer = s.dps.device_request(&r).await;
        assert_eq!(answer.status, 401, "{transport:?}");
        assert!(
            json_of(&answer)["message"]
                .as_str()
                .unwrap()
                .contains("neither a SAS token nor a client certificate")
        );
    }
    let mqtt = request(
        Transport::Mqtt,
        "dev-tpm",
        None,
        DeviceOperation::Register,
        RequestBody::Bytes(body),
    );
    // Over HTTPS they start TPM attestation (here refused: the key is not a TPM's).
    let https = DeviceRequest {
        transport: Transport::Https,
        ..mqtt
    };
    let answer = s.dps.device_request(&https).await;
    assert_ne!(answer.status, 202);
    assert!(
        !json_of(&answer)["message"]
            .as_str()
            .unwrap()
            .contains("neither a SAS token")
    );
}

#[tokio::test]
async fn the_registration_status_lookup_answers_the_record() {
    let s = setup().await;
    enroll(&s.dps, "dev-l").await;
    let t = token("dev-l");
    let r = request(
        Transport::Https,
        "dev-l",
        Some(&t),
        DeviceOperation::RegistrationStatus,
        RequestBody::Bytes(b""),
    );
    // No registration yet: DPS's 404.
    let answer = s.dps.device_request(&r).await;
    assert_eq!(answer.status, 404, "{answer:?}");
    assert_eq!(answer.retry_after, None);
}

/// A transport that reads the body when asked (HTTPS) is asked only once the credentials the
/// request presents were checked: a client that cannot authenticate is refused without its
/// body being read (here a body that never comes), and a request with no credentials at all is
/// read first, since its body may carry a TPM's keys.
#[tokio::test]
async fn credentials_are_checked_before_the_body_is_read() {
    let s = setup().await;
    enroll(&s.dps, "dev-b").await;
    let never = || std::future::pending::<Result<&[u8], Unread>>();
    let at_once = std::time::Duration::from_secs(5);
    let bad = "SharedAccessSignature sr=x&sig=y&se=1";
    for operation in [
        DeviceOperation::Register,
        DeviceOperation::RegistrationStatus,
    ] {
        let r = request(
            Transport::Https,
            "dev-b",
            Some(bad),
            operation,
            RequestBody::Bytes(b""),
        );
        let answer = tokio::time::timeout(at_once, s.dps.device_request_reading(&r, never()))
            .await
            .expect("refused without reading the body");
        assert_eq!(answer.status, 401, "{operation:?}");
        assert_eq!(answer.error_code, Some(401_002));
    }

    // With good credentials the body is read; one that did not arrive in time is a 408.
    let t = token("dev-b");
    let r = request(
        Transport::Https,
        "dev-b",
        Some(&t),
        DeviceOperation::Register,
        RequestBody::Bytes(b""),
    );
    let answer = s
        .dps
        .device_request_reading(&r, std::future::ready(Err::<&[u8], _>(Unread::TimedOut)))
        .await;
    assert_eq!(answer.status, 408);
    assert_eq!(json_of(&answer)["errorCode"], 408_000);

    // Without any credentials the body comes first: a malformed one is a 400.
    let r = request(
        Transport::Https,
        "dev-b",
        None,
        DeviceOperation::Register,
        RequestBody::Bytes(b""),
    );
    let answer = s
        .dps
        .device_request_reading(&r, std::future::ready(Ok(&b"{not json"[..])))
        .await;
    assert_eq!(answer.status, 400);
}
