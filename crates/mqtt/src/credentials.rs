//! IoT Hub's certificate management topics (`docs/protocol/certificate-issuance.md`, "Renewal
//! through the hub (MQTT)"; Azure/azure-sdk-for-c, branch `feature/dps-csr-preview`:
//! `sdk/src/azure/iot/az_iot_hub_client_csr.c`): a device subscribed to
//! `$iothub/credentials/res/#` publishes `{"id", "csr", "replace"}` to
//! `$iothub/credentials/POST/issueCertificate/?$rid={rid}`, and is answered on
//! `$iothub/credentials/res/{status}/?$rid={rid}`: a malformed request at once with 400; an
//! accepted one with 202 `{correlationId, operationExpires}`, then 200
//! `{correlationId, certificates}` (the chain, leaf first, base64 DER) or an error whose `info`
//! carries `credentialError` and `credentialMessage`.

use ironhub_hub::credentials::{CredentialOperation, IssueCertificateRequest};
use ironhub_hub::{Hub, HubError};
use serde_json::{Value, json};

use crate::topics;

fn error(e: &HubError, info: Value) -> Vec<u8> {
    json!({
        "errorCode": e.code(),
        "message": e.to_string(),
        "timestampUtc": ironhub_hub::credentials::now_rfc3339(),
        "info": info,
    })
    .to_string()
    .into_bytes()
}

/// The answers to one issueCertificate request of `device_id`, in order: topic and payload.
pub(crate) async fn issue_certificate(
    hub: &Hub,
    device_id: &str,
    rid: &str,
    payload: &[u8],
) -> Vec<(String, Vec<u8>)> {
    let respond = |status: u16| topics::credentials_response(status, rid);
    let request = match IssueCertificateRequest::read(device_id, payload) {
        Ok(r) => r,
        Err(e) => return vec![(respond(e.status()), error(&e, Value::Null))],
    };
    let op = CredentialOperation::start();
    let accepted = json!({
        "correlationId": op.correlation_id,
        "operationExpires": op.operation_expires,
    });
    let outcome = match hub.issue_certificate(device_id, &request).await {
        Ok(chain) => (
            respond(200),
            json!({"correlationId": op.correlation_id, "certificates": chain})
                .to_string()
                .into_bytes(),
        ),
        Err(e) => {
            tracing::info!(device = device_id, error = %e, "certificate not issued");
            let info = json!({
                "requestId": rid,
                "correlationId": op.correlation_id,
                "operationExpires": op.operation_expires,
                "credentialError": e.code().to_string(),
                "credentialMessage": e.to_string(),
            });
            (respond(e.status()), error(&e, info))
        }
    };
    vec![(respond(202), accepted.to_string().into_bytes()), outcome]
}
