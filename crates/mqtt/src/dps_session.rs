//! DPS's device registration API over MQTT (Azure docs, Communicate with your DPS using the MQTT
//! protocol; `docs/protocol/dps-device.md`, "MQTT"), on the
//! same endpoints as IoT Hub's (8883, and WebSocket on 443):
//!
//! - CONNECT: client id = registration id, username
//!   `{idScope}/registrations/{registrationId}/api-version=…` (no `?`), password a DPS SAS
//!   token, or none with an X.509 client certificate. Persistent sessions are not supported
//!   (DPS keeps none): a clean-session-0 CONNECT is served like a clean one.
//! - SUBSCRIBE `$dps/registrations/res/#` (anything else: 0x80);
//! - PUBLISH `$dps/registrations/PUT/iotdps-register/?$rid={rid}` with the registration
//!   request, and `$dps/registrations/GET/iotdps-get-operationstatus/?$rid={rid}&operationId=…`;
//! - answers on `$dps/registrations/res/{status}/?$rid={rid}[&retry-after={s}]`: `$rid` first
//!   and no other `$` (PYDEV splits the topic on `$`), an integer `retry-after`, and a JSON
//!   body always, errors included (Node parses every answer).
//!
//! The device attests on every request, with the credentials of its CONNECT: a wrong key or
//! an unknown registration is a `res/401` answer, as real DPS gives it (PYDEV reports it as
//! "register request returned a service error status code 401"). This file only translates:
//! the request, its checks and its answer (status, body, `retry-after`) are the domain's
//! (`ironhub_dps::device_api`).

use ironhub_auth::Credentials;
use ironhub_dps::Dps;
use ironhub_dps::device_api::{
    DeviceAnswer, DeviceOperation, DeviceRequest, RequestBody, Transport,
};
use rumqttc::mqttbytes::v4::{
    ConnAck, Connect, ConnectReturnCode, Packet, PubAck, Publish, SubAck, SubscribeReasonCode,
    UnsubAck,
};
use rumqttc::mqttbytes::{Protocol, QoS};
use tokio::io::{AsyncRead, AsyncWrite};

use crate::context::{ConnectionContext, idle_timeout};
use crate::framing::Conn;
use crate::topics::percent_decode as decode;

const REGISTER: &str = "$dps/registrations/PUT/iotdps-register/";
const OPERATION_STATUS: &str = "$dps/registrations/GET/iotdps-get-operationstatus/";
const RESPONSES: &str = "$dps/registrations/res/#";

/// A DPS username: `{idScope}/registrations/{registrationId}[/…]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct DpsUsername {
    pub scope: String,
    pub registration_id: String,
    /// `api-version` from the username, if any.
    pub api_version: Option<String>,
}

/// Whether an id looks like a DPS ID scope: `0ne` and hex digits.
fn looks_like_scope(s: &str) -> bool {
    s.len() > 3
        && s[..3].eq_ignore_ascii_case("0ne")
        && s[3..].chars().all(|c| c.is_ascii_hexdigit())
}

impl DpsUsername {
    /// The DPS username of a CONNECT, if it is one: its first segment is this instance's ID
    /// scope (or shaped like one), its second `registrations`.
    pub(crate) fn of(dps: &Dps, connect: &Connect) -> Option<DpsUsername> {
        let username = connect.login.as_ref()?.username.as_str();
        let mut parts = username.splitn(4, '/');
        let scope = parts.next()?;
        if !parts.next()?.eq_ignore_ascii_case("registrations") {
            return None;
        }
        if !(scope.eq_ignore_ascii_case(dps.id_scope()) || looks_like_scope(scope)) {
            return None;
        }
        let registration_id = parts.next().filter(|r| !r.is_empty())?;
        let rest = parts.next().unwrap_or_default();
        let api_version = rest
            .trim_start_matches('?')
            .split('&')
            .find_map(|p| p.strip_prefix("api-version="))
            .map(decode);
        Some(DpsUsername {
            scope: scope.to_owned(),
            registration_id: decode(registration_id),
            api_version,
        })
    }
}

/// The query pairs of a request topic (`…/?$rid=1&operationId=…`), values percent-decoded
/// (PYDEV encodes the operation id), plus the raw `$rid` to echo.
fn request_params(topic: &str) -> (Option<String>, Option<String>) {
    let query = topic.split_once('?').map_or("", |(_, q)| q);
    let mut rid = None;
    let mut operation_id = None;
    for pair in query.split('&') {
        match pair.split_once('=') {
            Some(("$rid", v)) => rid = Some(v.to_owned()),
            Some(("operationId", v)) => operation_id = Some(decode(v)),
            _ => {}
        }
    }
    (rid, operation_id)
}

/// `$dps/registrations/res/{status}/?$rid={rid}[&retry-after={s}]`.
fn response_topic(status: u16, rid: &str, retry_after: Option<u32>) -> String {
    match retry_after {
        Some(s) => format!("$dps/registrations/res/{status}/?$rid={rid}&retry-after={s}"),
        None => format!("$dps/registrations/res/{status}/?$rid={rid}"),
    }
}

/// A DPS connection's device: who it says it is, and what its CONNECT presented.
struct Provisioning<'a> {
    dps: Dps,
    user: DpsUsername,
    token: Option<String>,
    ctx: &'a ConnectionContext,
}

impl Provisioning<'_> {
    /// The answer to a request on `topic`: a status, a body, and a `retry-after` when DPS
    /// sends one (the domain decides all three).
    async fn answer(&self, topic: &str, payload: &[u8]) -> DeviceAnswer {
        let (_, operation_id) = request_params(topic);
        let operation = if topic.starts_with(REGISTER) {
            DeviceOperation::Register
        } else {
            DeviceOperation::OperationStatus {
                operation_id: operation_id.as_deref().unwrap_or_default(),
            }
        };
        let request = DeviceRequest {
            transport: Transport::Mqtt,
            id_scope: &self.user.scope,
            registration_id: &self.user.registration_id,
            operation,
            credentials: Credentials::new(self.token.as_deref(), &self.ctx.client_certificates),
            body: RequestBody::Bytes(payload),
            api_version: self.user.api_version.as_deref(),
        };
        self.dps.device_request(&request).await
    }
}

/// Serves a DPS connection to its end.
pub(crate) async fn serve<S>(
    mut conn: Conn<S>,
    dps: Dps,
    ctx: &ConnectionContext,
    connect: Connect,
    user: DpsUsername,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send,
{
    let refuse = |code| Packet::ConnAck(ConnAck::new(code, false));
    if connect.protocol != Protocol::V4 {
        let _ = conn
            .send(refuse(ConnectReturnCode::RefusedProtocolVersion))
            .await;
        return;
    }
    if !connect
        .client_id
        .eq_ignore_ascii_case(&user.registration_id)
    {
        tracing::info!(peer = %ctx.peer, client_id = %connect.client_id, registration_id = %user.registration_id, "DPS client id is not the registration id");
        let _ = conn.send(refuse(ConnectReturnCode::BadClientId)).await;
        return;
    }
    let token = connect.login.as_ref().map(|l| l.password.clone());
    if Credentials::new(token.as_deref(), &ctx.client_certificates).is_empty() {
        // Nothing to attest with.
        let _ = conn.send(refuse(ConnectReturnCode::NotAuthorized)).await;
        return;
    }
    if conn
        .send(Packet::ConnAck(ConnAck::new(
            ConnectReturnCode::Success,
            false,
        )))
        .await
        .is_err()
    {
        return;
    }
    tracing::debug!(peer = %ctx.peer, registration_id = %user.registration_id, "DPS device connected");
    let idle = idle_timeout(connect.keep_alive);
    let session = Provisioning {
        dps,
        user,
        token,
        ctx,
    };
    loop {
        let packet = match conn.parse() {
            Ok(Some(p)) => p,
            Ok(None) => match tokio::time::timeout(idle, conn.fill()).await {
                Ok(true) => continue,
                _ => return,
            },
            Err(e) => {
                tracing::info!(peer = %ctx.peer, error = %e, "malformed packet");
                return;
            }
        };
        let reply = match packet {
            Packet::Subscribe(s) => {
                let codes = s
                    .filters
                    .iter()
                    .map(|f| {
                        if f.path == RESPONSES {
                            SubscribeReasonCode::Success(match f.qos {
                                QoS::AtMostOnce => QoS::AtMostOnce,
                                _ => QoS::AtLeastOnce,
                            })
                        } else {
                            SubscribeReasonCode::Failure
                        }
                    })
                    .collect();
                Packet::SubAck(SubAck::new(s.pkid, codes))
            }
            Packet::Unsubscribe(u) => Packet::UnsubAck(UnsubAck::new(u.pkid)),
            Packet::PingReq => Packet::PingResp,
            Packet::Disconnect => return,
            Packet::Publish(p) => {
                if p.qos == QoS::ExactlyOnce
                    || !(p.topic.starts_with(REGISTER) || p.topic.starts_with(OPERATION_STATUS))
                {
                    tracing::info!(peer = %ctx.peer, topic = %p.topic, "DPS publish to an unsupported topic or at QoS 2; closing");
                    return;
                }
                if p.qos == QoS::AtLeastOnce
                    && conn
                        .send(Packet::PubAck(PubAck::new(p.pkid)))
                        .await
                        .is_err()
                {
                    return;
                }
                let (rid, _) = request_params(&p.topic);
                let rid = rid.unwrap_or_default();
                let answer = session.answer(&p.topic, &p.payload).await;
                Packet::Publish(Publish::new(
                    response_topic(answer.status, &rid, answer.retry_after),
                    QoS::AtMostOnce,
                    answer.body.to_json(),
                ))
            }
            // A PUBACK of an answer (a client may acknowledge QoS 0), or anything else a
            // device has no business sending: ignored, or the end.
            Packet::PubAck(_) => continue,
            other => {
                tracing::info!(peer = %ctx.peer, packet = ?other, "unexpected packet on a DPS connection");
                return;
            }
        };
        if conn.send(reply).await.is_err() {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_topics_and_answers() {
        let (rid, op) = request_params(
            "$dps/registrations/GET/iotdps-get-operationstatus/?$rid=d39c&operationId=4.abc%2Edef",
        );
        assert_eq!(rid.as_deref(), Some("d39c"));
        assert_eq!(op.as_deref(), Some("4.abc.def"));
        assert_eq!(
            response_topic(202, "eb91", Some(2)),
            "$dps/registrations/res/202/?$rid=eb91&retry-after=2"
        );
        let answer = response_topic(401, "1", None);
        assert_eq!(answer, "$dps/registrations/res/401/?$rid=1");
        // PYDEV splits on '$': the properties are what follows the second one.
        assert_eq!(answer.split('$').count(), 3);
        assert!(looks_like_scope("0ne000ABCD1"));
        assert!(!looks_like_scope("myhub.example"));
        assert!(!looks_like_scope("0ne"));
    }
}
