//! DPS's `TPM` SASL mechanism: TPM attestation over AMQP, as the provisioning SDKs' AMQP
//! transports run it (azure-iot-sdk-node, `provisioning/transport/amqp/src/sasl_tpm.ts`;
//! azure-iot-sdk-csharp, `SaslTpmHandler`; `docs/protocol/tpm.md`, "Over AMQP"):
//!
//! 1. `sasl-init` carries `0x00 {idScope} 0x00 {registrationId} 0x00 {EK}`, the EK the TPM's
//!    marshalled `TPM2B_PUBLIC`; the server answers with a one-byte challenge `0x00`;
//! 2. the device answers `0x00 {SRK}`; the server sends the activation blob (the bytes of
//!    HTTPS's `authenticationKey`) in segments, each prefixed by a control byte: `0x80`
//!    (a segment), `0x40` on the last one, and a two-bit sequence number;
//! 3. the device acknowledges each segment but the last with `0x00`, and the last with
//!    `0x00 {SAS token}` signed by the key its TPM imported from the blob.
//!
//! The challenge and the token are the domain's ([`Dps::tpm_challenge`],
//! [`Dps::attest_symmetric_key`], the calls HTTPS's two register requests make); this file is
//! only the framing. A refusal is the outcome `auth`. The connection is then the device's DPS
//! login, its requests attested with that token like a PLAIN login's.
//!
//! fe2o3-amqp asks its SASL acceptor synchronously, so the domain's calls run on the
//! connection's worker thread ([`tokio::task::block_in_place`], bounded by
//! [`DOMAIN_TIMEOUT`]); a runtime that cannot block (a current-thread one) answers `sys`.

use std::time::Duration;

use fe2o3_amqp::types::sasl::SaslCode;
use ironhub_dps::Dps;
use ironhub_dps::model::TpmAttestation;
use tokio::runtime::{Handle, RuntimeFlavor};

use crate::registration_login::RegistrationLogin;

/// The mechanism's name.
pub const TPM: &str = "TPM";

/// The most blob bytes in one challenge: a SASL frame is at most 512 bytes (AMQP 1.0 part 5,
/// "SASL Negotiation": frames are limited to the minimum max frame size until the connection
/// opens), and the frame header, the `sasl-challenge` descriptor and the binary's size take
/// some 25 of them.
const SEGMENT: usize = 400;
/// Control byte bits: a segment of the challenge, its last one, and its sequence number.
const SEGMENT_BIT: u8 = 0x80;
const LAST_BIT: u8 = 0x40;
const SEQUENCE_BITS: u8 = 0x03;

/// How long the exchange waits on the domain (a store lookup and RSA encryptions).
const DOMAIN_TIMEOUT: Duration = Duration::from_secs(5);

/// What the exchange answers a frame with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// A `sasl-challenge` with these bytes.
    Challenge(Vec<u8>),
    /// The outcome `ok`: the device proved its TPM holds the key of its enrollment.
    Proven(RegistrationLogin),
    /// The outcome with this code.
    Refused(SaslCode),
}

/// Where one connection's exchange is.
#[derive(Debug, Clone, Default)]
pub enum TpmExchange {
    /// No `sasl-init` with the mechanism yet.
    #[default]
    Idle,
    /// The init frame was read; the SRK is awaited.
    AwaitingSrk { device: Device, ek: Vec<u8> },
    /// The blob goes out in segments; `sent` bytes of it did.
    Sending {
        device: Device,
        blob: Vec<u8>,
        sent: usize,
        sequence: u8,
    },
    /// The last segment went out; the token is awaited.
    AwaitingToken { device: Device },
    /// The exchange ended (with either outcome).
    Over,
}

/// The registration the init frame named.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Device {
    scope: String,
    registration_id: String,
}

impl TpmExchange {
    /// The answer to the `sasl-init` frame's initial response.
    pub fn init(&mut self, initial_response: &[u8]) -> Step {
        *self = TpmExchange::Over;
        let Some((device, ek)) = parse_init(initial_response) else {
            tracing::debug!("AMQP TPM login refused: the init frame is malformed");
            return Step::Refused(SaslCode::Auth);
        };
        *self = TpmExchange::AwaitingSrk { device, ek };
        Step::Challenge(vec![0])
    }

    /// The answer to a `sasl-response` frame.
    pub fn respond(&mut self, dps: Option<&Dps>, response: &[u8]) -> Step {
        let Some(dps) = dps else {
            return Step::Refused(SaslCode::Auth);
        };
        match std::mem::replace(self, TpmExchange::Over) {
            TpmExchange::AwaitingSrk { device, ek } => match response {
                [0, srk @ ..] if !srk.is_empty() => self.challenge(dps, device, &ek, srk),
                _ => refused(&device, "the storage root key frame is malformed"),
            },
            TpmExchange::Sending {
                device,
                blob,
                sent,
                sequence,
            } => match response {
                [0] => self.send(device, blob, sent, sequence),
                _ => refused(&device, "a segment's acknowledgement is malformed"),
            },
            TpmExchange::AwaitingToken { device } => match response {
                [0, token @ ..] => match std::str::from_utf8(token) {
                    Ok(token) => attest(dps, device, token),
                    Err(_) => refused(&device, "the token is not UTF-8"),
                },
                _ => refused(&device, "the token frame is malformed"),
            },
            TpmExchange::Idle | TpmExchange::Over => {
                tracing::debug!("AMQP TPM login refused: a response out of turn");
                Step::Refused(SaslCode::Auth)
            }
        }
    }

    /// The domain's challenge for the TPM of `ek` and `srk`, and its first segment.
    fn challenge(&mut self, dps: &Dps, device: Device, ek: &[u8], srk: &[u8]) -> Step {
        let given = TpmAttestation {
            endorsement_key: ironhub_auth::b64::encode(ek),
            storage_root_key: Some(ironhub_auth::b64::encode(srk)),
        };
        let challenge = dps.tpm_challenge(&device.scope, &device.registration_id, &given);
        let blob = match blocking(challenge) {
            Some(Ok(key)) => match ironhub_auth::b64::decode(&key) {
                Ok(blob) if !blob.is_empty() => blob,
                _ => return Step::Refused(SaslCode::Sys),
            },
            Some(Err(e)) => return refused(&device, e),
            None => return Step::Refused(SaslCode::Sys),
        };
        self.send(device, blob, 0, 0)
    }

    /// The next segment of `blob`, from `sent` on.
    fn send(&mut self, device: Device, blob: Vec<u8>, sent: usize, sequence: u8) -> Step {
        let end = blob.len().min(sent + SEGMENT);
        let last = end == blob.len();
        let control = SEGMENT_BIT | if last { LAST_BIT } else { 0 } | (sequence & SEQUENCE_BITS);
        let mut frame = Vec::with_capacity(1 + end - sent);
        frame.push(control);
        frame.extend_from_slice(&blob[sent..end]);
        *self = if last {
            TpmExchange::AwaitingToken { device }
        } else {
            TpmExchange::Sending {
                device,
                blob,
                sent: end,
                sequence: sequence.wrapping_add(1),
            }
        };
        Step::Challenge(frame)
    }
}

/// The domain's check of the token the TPM signed.
fn attest(dps: &Dps, device: Device, token: &str) -> Step {
    let attested = dps.attest_symmetric_key(&device.scope, &device.registration_id, token);
    match blocking(attested) {
        Some(Ok(_)) => Step::Proven(RegistrationLogin {
            scope: device.scope,
            registration_id: device.registration_id,
            token: token.to_owned(),
        }),
        Some(Err(e)) => refused(&device, e),
        None => Step::Refused(SaslCode::Sys),
    }
}

fn refused(device: &Device, why: impl std::fmt::Display) -> Step {
    tracing::info!(scope = %device.scope, registration_id = %device.registration_id, error = %why, "AMQP TPM login refused");
    Step::Refused(SaslCode::Auth)
}

/// `0x00 {idScope} 0x00 {registrationId} 0x00 {EK}`.
fn parse_init(bytes: &[u8]) -> Option<(Device, Vec<u8>)> {
    let [0, rest @ ..] = bytes else {
        return None;
    };
    let mut parts = rest.splitn(3, |&b| b == 0);
    let (Some(scope), Some(id), Some(ek)) = (parts.next(), parts.next(), parts.next()) else {
        return None;
    };
    let (scope, id) = (
        std::str::from_utf8(scope).ok()?,
        std::str::from_utf8(id).ok()?,
    );
    if scope.is_empty() || id.is_empty() || ek.is_empty() {
        return None;
    }
    Some((
        Device {
            scope: scope.to_owned(),
            registration_id: id.to_owned(),
        },
        ek.to_vec(),
    ))
}

/// Runs `work` to its end from the synchronous SASL acceptor, within [`DOMAIN_TIMEOUT`]; `None`
/// when it timed out or the runtime cannot block a worker.
fn blocking<F: Future>(work: F) -> Option<F::Output> {
    let handle = Handle::try_current().ok()?;
    if handle.runtime_flavor() != RuntimeFlavor::MultiThread {
        tracing::warn!("AMQP TPM login refused: the runtime cannot wait on the domain");
        return None;
    }
    tokio::task::block_in_place(|| handle.block_on(tokio::time::timeout(DOMAIN_TIMEOUT, work))).ok()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use std::sync::Arc;

    use ironhub_dps::model::IndividualEnrollment;
    use serde_json::json;

    use super::*;

    /// A real TPM's endorsement and storage root keys (`TPM2B_PUBLIC`, RSA 2048), from swtpm
    /// (the ones `crates/dps/tests/register.rs` uses).
    const TPM_EK: &str = "AToAAQALAAMAsgAgg3GXZ0SEs/gakMyNRqXXJP1S124GUgtk8qHaGzMUaaoABgCAAEMAEAgAAAAAAAEA6jZTABe2raY/Iit1OwW6gszqnC0QXA82nDCYSQ5HKtHij82nsnsq6avmO1lL7VM7QpMF3rTka43b1duQSFMmqoQ7zFbaQYYsPo6B/GSJns4bVGe8zCzmIblNZTMHBq7M9cAla5+mLAGVV/GlQHcxzjcuNnvNkIaJU9bA8hLobYgAq0NJGTX3QDHjSlN7YFbjSRtsZdB93gELNrFXmMfgR5NgwEg6A0LT5rRDd+c/h2wfp9UBxSLD97YHqwCyKJazqaC4zSKS5KIDkxKMAGsvijxKsCRsSEJekK6KDVXj8SvJhAjUTIH+Z/VDoM/Wc/r9YUAjg5+EGJx0JsKChBob7w==";
    const TPM_SRK: &str = "ARoAAQALAAMAcgAAAAYAgABDABAIAAAAAAABAJMqG1wPdcoxKxmeo6vtw9OzUg6Xcewiy5NYQ9s2C+RkJT98/lMRgjjt/hPaeu0scX2NvVwZ9WpSGARqkoYOIoMxyrP6BKOvztWRmHXznLlOrRnICbwyb9HUXhTM5aMs2OYmDZFqFl1EkfmePmWuT4V4BajJqhC2ri1sYQjXQbIrJ93ltlg0TsogIUf9Txg0DqCIA66/zFJ/f5hsL0rn2jspkEI8thFZHFrXDHyKW5HBHmvPYDX1iWn2gfKuUm1DsiZTo4Sq+2E1CjHcSzXnlCHxSUwI9Y/GfvLuLgGnXRrom+FTTDqz8QY//ioT/JMfXgw4qMxSmUVmNEItkpwjVK8=";

    fn b64(text: &str) -> Vec<u8> {
        ironhub_auth::b64::decode(text).unwrap()
    }

    async fn dps_with_enrollment() -> (Dps, IndividualEnrollment, tempfile::TempDir) {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(ironhub_embedded::SqliteStore::open(dir.path()).unwrap());
        let dps = Dps::open(store, vec!["dps.example".into()], None)
            .await
            .unwrap();
        let enrollment: IndividualEnrollment = serde_json::from_value(json!({
            "registrationId": "tpm-1",
            "attestation": {"type": "tpm", "tpm": {"endorsementKey": TPM_EK}},
        }))
        .unwrap();
        let enrollment = dps
            .create_or_update("tpm-1", enrollment, None)
            .await
            .unwrap();
        (dps, enrollment, dir)
    }

    fn init_frame(scope: &str, id: &str, ek: &[u8]) -> Vec<u8> {
        let mut frame = vec![0];
        frame.extend_from_slice(scope.as_bytes());
        frame.push(0);
        frame.extend_from_slice(id.as_bytes());
        frame.push(0);
        frame.extend_from_slice(ek);
        frame
    }

    fn prefixed(bytes: &[u8]) -> Vec<u8> {
        [&[0][..], bytes].concat()
    }

    fn challenge(step: Step) -> Vec<u8> {
        match step {
            Step::Challenge(bytes) => bytes,
            other => panic!("expected a challenge, got {other:?}"),
        }
    }

    /// Runs the exchange up to the token: the reassembled blob.
    fn blob_for(dps: &Dps, exchange: &mut TpmExchange, id: &str) -> Vec<u8> {
        let ek = b64(TPM_EK);
        assert_eq!(
            challenge(exchange.init(&init_frame(dps.id_scope(), id, &ek))),
            [0]
        );
        let mut step = exchange.respond(Some(dps), &prefixed(&b64(TPM_SRK)));
        let mut blob = Vec::new();
        for sequence in 0u8.. {
            let segment = challenge(step);
            assert!(segment.len() <= SEGMENT + 1);
            assert_eq!(
                segment[0] & (SEGMENT_BIT | SEQUENCE_BITS),
                0x80 | (sequence & 3)
            );
            blob.extend_from_slice(&segment[1..]);
            if segment[0] & LAST_BIT != 0 {
                break;
            }
            step = exchange.respond(Some(dps), &[0]);
        }
        blob
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_tpm_gets_the_domain_s_blob_in_segments_and_logs_in_with_the_token_it_signs() {
        let (dps, enrollment, _dir) = dps_with_enrollment().await;
        let mut exchange = TpmExchange::default();
        let blob = blob_for(&dps, &mut exchange, "tpm-1");
        assert!(blob.len() > SEGMENT, "the blob spans segments");

        // The token signed with the enrollment's key (what the TPM imported): the login.
        let [key, _] = dps.tpm_keys(&enrollment).unwrap();
        let resource = format!("{}/registrations/tpm-1", dps.id_scope());
        let expiry = ironhub_auth::unix_now() + 600;
        let token =
            ironhub_auth::sas::generate(&resource, &key, expiry, Some("registration")).unwrap();
        let step = exchange.respond(Some(&dps), &prefixed(token.as_bytes()));
        assert_eq!(
            step,
            Step::Proven(RegistrationLogin {
                scope: dps.id_scope().to_owned(),
                registration_id: "tpm-1".into(),
                token,
            })
        );
        // Nothing follows the outcome.
        assert_eq!(
            exchange.respond(Some(&dps), &[0]),
            Step::Refused(SaslCode::Auth)
        );

        // A token signed with another key is refused.
        let mut exchange = TpmExchange::default();
        blob_for(&dps, &mut exchange, "tpm-1");
        let wrong = ironhub_auth::generate_key(32);
        let token =
            ironhub_auth::sas::generate(&resource, &wrong, expiry, Some("registration")).unwrap();
        assert_eq!(
            exchange.respond(Some(&dps), &prefixed(token.as_bytes())),
            Step::Refused(SaslCode::Auth)
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_unknown_tpm_or_a_malformed_frame_is_refused() {
        let (dps, _enrollment, _dir) = dps_with_enrollment().await;
        let scope = dps.id_scope().to_owned();
        let (ek, srk) = (b64(TPM_EK), b64(TPM_SRK));

        // Another TPM (the SRK as its EK), an unknown registration, another scope, an EK that
        // is not a TPM key: refused once the SRK arrives.
        for (scope, id, ek) in [
            (scope.as_str(), "tpm-1", &srk),
            (scope.as_str(), "tpm-nobody", &ek),
            ("0ne00000000", "tpm-1", &ek),
            (scope.as_str(), "tpm-1", &vec![1, 2, 3]),
        ] {
            let mut exchange = TpmExchange::default();
            assert_eq!(challenge(exchange.init(&init_frame(scope, id, ek))), [0]);
            assert_eq!(
                exchange.respond(Some(&dps), &prefixed(&srk)),
                Step::Refused(SaslCode::Auth),
                "{scope}/{id}"
            );
        }

        // Malformed init frames.
        for init in [
            Vec::new(),
            vec![1, b'a', 0, b'b', 0, 1],
            init_frame(&scope, "", &ek),
            init_frame("", "tpm-1", &ek),
            init_frame(&scope, "tpm-1", &[]),
            vec![0, b'a', 0, b'b'],
        ] {
            let mut exchange = TpmExchange::default();
            assert_eq!(exchange.init(&init), Step::Refused(SaslCode::Auth));
        }

        // An SRK frame without its prefix, an acknowledgement that is not one, a token frame
        // without its prefix.
        let mut exchange = TpmExchange::default();
        exchange.init(&init_frame(&scope, "tpm-1", &ek));
        assert_eq!(
            exchange.respond(Some(&dps), &srk),
            Step::Refused(SaslCode::Auth)
        );
        let mut exchange = TpmExchange::default();
        exchange.init(&init_frame(&scope, "tpm-1", &ek));
        challenge(exchange.respond(Some(&dps), &prefixed(&srk)));
        assert_eq!(
            exchange.respond(Some(&dps), &[0, 0]),
            Step::Refused(SaslCode::Auth)
        );
        let mut exchange = TpmExchange::default();
        blob_for(&dps, &mut exchange, "tpm-1");
        assert_eq!(
            exchange.respond(Some(&dps), b"token"),
            Step::Refused(SaslCode::Auth)
        );
        // A response before any init; a server with no DPS.
        assert_eq!(
            TpmExchange::default().respond(Some(&dps), &[0]),
            Step::Refused(SaslCode::Auth)
        );
        let mut exchange = TpmExchange::default();
        exchange.init(&init_frame(&scope, "tpm-1", &ek));
        assert_eq!(
            exchange.respond(None, &prefixed(&srk)),
            Step::Refused(SaslCode::Auth)
        );
    }

    #[tokio::test]
    async fn a_current_thread_runtime_cannot_wait_on_the_domain() {
        assert_eq!(blocking(async { 1 }), None);
    }
}
