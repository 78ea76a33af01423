//! IoT Hub's certificate management topics (`docs/protocol/certificate-issuance.md`, "Renewal
//! through the hub (MQTT)"; Azure/azure-sdk-for-c, branch `feature/dps-csr-preview`:
//! `sdk/src/azure/iot/az_iot_hub_client_csr.c`): a device subscribed to
//! `$iothub/credentials/res/#` publishes `{"id", "csr", "replace"}` to
//! `$iothub/credentials/POST/issueCertificate/?$rid={rid}`, and is answered on
//! `$iothub/credentials/res/{status}/?$rid={rid}`: a malformed request at once with 400; an
//! accepted one with 202 `{correlationId, operationExpires}`, then 200
//! `{correlationId, certificates}` (the chain, leaf first, base64 DER) or an error whose `info`
//! carries `credentialError` and `credentialMessage`.

use ironhub_hub::credentials::{CredentialOperation, read_request};
use ironhub_hub::model::{
    CredentialErrorBody, CredentialErrorInfo, IssueCertificateAccepted, IssuedCertificate,
};
use ironhub_hub::{Hub, HubError};

use crate::topics;

fn error(e: &HubError, info: Option<CredentialErrorInfo>) -> Vec<u8> {
    let body = CredentialErrorBody {
        error_code: e.code(),
        info,
        message: e.to_string(),
        timestamp_utc: ironhub_hub::credentials::now_rfc3339(),
    };
    serde_json::to_vec(&body).unwrap_or_default()
}

/// The answers to one issueCertificate request of `device_id`, in order: topic and payload.
pub(crate) async fn issue_certificate(
    hub: &Hub,
    device_id: &str,
    rid: &str,
    payload: &[u8],
) -> Vec<(String, Vec<u8>)> {
    let respond = |status: u16| topics::credentials_response(status, rid);
    let request = match read_request(device_id, payload) {
        Ok(r) => r,
        Err(e) => return vec![(respond(e.status()), error(&e, None))],
    };
    let op = CredentialOperation::start();
    let accepted = IssueCertificateAccepted {
        correlation_id: op.correlation_id.clone(),
        operation_expires: op.operation_expires.clone(),
    };
    let outcome = match hub.issue_certificate(device_id, &request).await {
        Ok(certificates) => (
            respond(200),
            serde_json::to_vec(&IssuedCertificate {
                certificates,
                correlation_id: op.correlation_id.clone(),
            })
            .unwrap_or_default(),
        ),
        Err(e) => {
            tracing::info!(device = device_id, error = %e, "certificate not issued");
            let info = CredentialErrorInfo {
                correlation_id: op.correlation_id.clone(),
                credential_error: e.code().to_string(),
                credential_message: e.to_string(),
                operation_expires: op.operation_expires.clone(),
                request_id: rid.to_owned(),
            };
            (respond(e.status()), error(&e, Some(info)))
        }
    };
    let accepted = serde_json::to_vec(&accepted).unwrap_or_default();
    vec![(respond(202), accepted), outcome]
}
