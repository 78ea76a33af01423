//! Provisioning one simulated device through DPS over MQTT with an enrollment group's key
//! (the device's key derived from it, as the device SDKs do): CONNECT as
//! `{scope}/registrations/{id}`, SUBSCRIBE to the answers, register, poll until assigned.
//! `ironhub-bench provision` measures DPS with the same exchange ([`register`]).

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::{Context as _, bail};
use bytes::BytesMut;
use ironhub_auth::{derive_device_key, sas, unix_now};
use rumqttc::mqttbytes::QoS;
use rumqttc::mqttbytes::v4::{Connect, ConnectReturnCode, Packet, Publish, Subscribe};
use serde_json::{Value, json};

use tokio::io::{AsyncRead, AsyncWrite};

use crate::net::{Dialer, read, write};

/// The DPS device API version the SDKs use.
const API_VERSION: &str = "2021-06-01";
/// The longest wait between two status polls, whatever `retry-after` says.
const MAX_POLL: Duration = Duration::from_secs(1);
/// How many status polls before giving up.
const MAX_POLLS: u32 = 60;

/// Where and how devices provision.
#[derive(Debug, Clone)]
pub struct Dps {
    /// The DPS endpoint's host name (its certificate's name).
    pub host: String,
    /// The address its MQTT port listens on.
    pub address: SocketAddr,
    pub id_scope: String,
    /// The enrollment group's symmetric key (base64).
    pub group_key: String,
}

/// What DPS assigned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Assignment {
    pub hub: String,
    pub device_id: String,
    /// The device's key (derived from the group key).
    pub key: String,
}

/// How a device waits before each status poll.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Poll {
    /// The answer's `retry-after`, at most a second (200 ms when it names none), as a
    /// device does.
    RetryAfter,
    /// A fixed pause, whatever the answer says (a load generator measuring the server rather
    /// than the devices' patience).
    Every(Duration),
}

/// What a registration was assigned and how many status polls it took.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Registered {
    pub hub: String,
    pub device_id: String,
    pub polls: u32,
}

impl Dps {
    /// Registers `registration_id` and waits until DPS assigns it.
    pub async fn provision(
        &self,
        dialer: &Dialer,
        n: usize,
        registration_id: &str,
    ) -> anyhow::Result<Assignment> {
        let key = derive_device_key(&self.group_key, registration_id)
            .context("--group-key is not a base64 key")?;
        let token = registration_token(&self.id_scope, registration_id, &key)?;
        let mut stream = dialer.connect(self.address, n).await?;
        let registered = register(
            &mut stream,
            &self.id_scope,
            registration_id,
            &token,
            Poll::RetryAfter,
        )
        .await?;
        Ok(Assignment {
            hub: registered.hub,
            device_id: registered.device_id,
            key,
        })
    }
}

/// The SAS token a device registers with: for `{scope}/registrations/{id}`, signed by its
/// key, policy `registration`, valid an hour.
pub fn registration_token(scope: &str, registration_id: &str, key: &str) -> anyhow::Result<String> {
    Ok(sas::generate(
        &format!("{scope}/registrations/{registration_id}"),
        key,
        unix_now() + 3600,
        Some("registration"),
    )?)
}

/// One registration over MQTT on a connected `stream`: CONNECT with `token`, SUBSCRIBE to the
/// answers, the register request, status polls (waiting as `poll` says) until `assigned`,
/// then DISCONNECT.
pub async fn register<S: AsyncRead + AsyncWrite + Unpin>(
    stream: &mut S,
    scope: &str,
    registration_id: &str,
    token: &str,
    poll: Poll,
) -> anyhow::Result<Registered> {
    let mut buf = BytesMut::new();
    let mut c = Connect::new(registration_id);
    c.keep_alive = 60;
    c.set_login(
        format!("{scope}/registrations/{registration_id}/api-version={API_VERSION}"),
        token,
    );
    write(stream, Packet::Connect(c)).await?;
    match read(stream, &mut buf).await? {
        Packet::ConnAck(a) if a.code == ConnectReturnCode::Success => {}
        other => bail!("DPS refused the connection: {other:?}"),
    }
    let mut s = Subscribe::new("$dps/registrations/res/#", QoS::AtLeastOnce);
    s.pkid = 1;
    write(stream, Packet::Subscribe(s)).await?;
    match read(stream, &mut buf).await? {
        Packet::SubAck(_) => {}
        other => bail!("no SUBACK from DPS: {other:?}"),
    }
    let body = json!({ "registrationId": registration_id }).to_string();
    let (status, mut wait, answer) = request(
        stream,
        &mut buf,
        1,
        "$dps/registrations/PUT/iotdps-register/?$rid=1".into(),
        body.into_bytes(),
    )
    .await?;
    if status != 202 {
        bail!("the register request was answered {status}: {answer}");
    }
    let operation = answer["operationId"]
        .as_str()
        .context("the register answer has no operationId")?
        .to_owned();
    for rid in 2..MAX_POLLS + 2 {
        tokio::time::sleep(match poll {
            Poll::RetryAfter => wait,
            Poll::Every(every) => every,
        })
        .await;
        let (status, retry, answer) = request(
            stream,
            &mut buf,
            rid,
            format!(
                "$dps/registrations/GET/iotdps-get-operationstatus/?$rid={rid}&operationId={operation}"
            ),
            Vec::new(),
        )
        .await?;
        wait = retry;
        match (status, answer["status"].as_str()) {
            (200, Some("assigned")) => {
                let _ = write(stream, Packet::Disconnect).await;
                let state = &answer["registrationState"];
                let text = |name: &str| {
                    state[name]
                        .as_str()
                        .filter(|s| !s.is_empty())
                        .map(str::to_owned)
                        .with_context(|| format!("an assigned answer without {name}: {answer}"))
                };
                return Ok(Registered {
                    hub: text("assignedHub")?,
                    device_id: text("deviceId")?,
                    polls: rid - 1,
                });
            }
            (202 | 200, Some("assigning" | "unassigned")) => {}
            _ => bail!("a status poll was answered {status}: {answer}"),
        }
    }
    bail!("not assigned after {MAX_POLLS} polls")
}

/// Publishes a DPS request at QoS 1 and waits for its answer (`res/{status}/?$rid={rid}`):
/// the status, how long to wait before polling (`retry-after`, at most [`MAX_POLL`]) and
/// the body.
async fn request<S: AsyncRead + AsyncWrite + Unpin>(
    stream: &mut S,
    buf: &mut BytesMut,
    rid: u32,
    topic: String,
    payload: Vec<u8>,
) -> anyhow::Result<(u16, Duration, Value)> {
    let mut p = Publish::new(topic, QoS::AtLeastOnce, payload);
    p.pkid = u16::try_from(rid % 65_535 + 1).unwrap_or(1);
    write(stream, Packet::Publish(p)).await?;
    loop {
        match read(stream, buf).await? {
            Packet::PubAck(_) => {}
            Packet::Publish(answer) => {
                let (path, query) = answer.topic.split_once("/?").unwrap_or((&answer.topic, ""));
                let status = path
                    .strip_prefix("$dps/registrations/res/")
                    .and_then(|s| s.parse::<u16>().ok())
                    .with_context(|| format!("not a DPS answer: {}", answer.topic))?;
                let mut mine = false;
                let mut wait = Duration::from_millis(200);
                for pair in query.split('&') {
                    match pair.split_once('=') {
                        Some(("$rid", r)) => mine = r == rid.to_string(),
                        Some(("retry-after", s)) => {
                            if let Ok(s) = s.parse::<u64>() {
                                wait = Duration::from_secs(s).min(MAX_POLL);
                            }
                        }
                        _ => {}
                    }
                }
                if !mine {
                    bail!("an answer to another request: {}", answer.topic);
                }
                let body = if answer.payload.is_empty() {
                    Value::Null
                } else {
                    serde_json::from_slice(&answer.payload)?
                };
                return Ok((status, wait, body));
            }
            other => bail!("an unexpected packet from DPS: {other:?}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A DPS that answers the register request `assigning` and the first poll too, then
    /// `assigned`: what a device reads back over MQTT.
    async fn fake_dps(mut s: tokio::io::DuplexStream) -> anyhow::Result<()> {
        use rumqttc::mqttbytes::v4::{ConnAck, PubAck, SubAck, SubscribeReasonCode};
        let mut buf = BytesMut::new();
        let mut polls = 0;
        loop {
            match read(&mut s, &mut buf).await? {
                Packet::Connect(c) => {
                    assert_eq!(c.client_id, "reg-1");
                    let login = c.login.context("no login")?;
                    assert_eq!(
                        login.username,
                        "0ne/registrations/reg-1/api-version=2021-06-01"
                    );
                    let ack = ConnAck::new(ConnectReturnCode::Success, false);
                    write(&mut s, Packet::ConnAck(ack)).await?;
                }
                Packet::Subscribe(sub) => {
                    let codes = vec![SubscribeReasonCode::Success(QoS::AtLeastOnce)];
                    write(&mut s, Packet::SubAck(SubAck::new(sub.pkid, codes))).await?;
                }
                Packet::Publish(p) => {
                    write(&mut s, Packet::PubAck(PubAck::new(p.pkid))).await?;
                    let rid = p.topic.split("$rid=").nth(1).unwrap_or_default();
                    let rid = rid.split('&').next().unwrap_or_default();
                    let (status, body) = if p.topic.contains("iotdps-register") {
                        (202, json!({"operationId": "op", "status": "assigning"}))
                    } else if polls == 0 {
                        polls += 1;
                        (202, json!({"operationId": "op", "status": "assigning"}))
                    } else {
                        let state = json!({"assignedHub": "hub.example", "deviceId": "reg-1"});
                        (
                            200,
                            json!({"status": "assigned", "registrationState": state}),
                        )
                    };
                    let topic =
                        format!("$dps/registrations/res/{status}/?$rid={rid}&retry-after=3");
                    let answer = Publish::new(topic, QoS::AtMostOnce, body.to_string());
                    write(&mut s, Packet::Publish(answer)).await?;
                }
                Packet::Disconnect => return Ok(()),
                other => bail!("unexpected {other:?}"),
            }
        }
    }

    #[tokio::test]
    async fn register_polls_at_the_given_interval_until_assigned() {
        let (mut device, dps) = tokio::io::duplex(4096);
        let server = tokio::spawn(fake_dps(dps));
        // A fixed 1 ms poll, not the answers' `retry-after=3`: the test would take 2 s with it.
        let registered = tokio::time::timeout(
            Duration::from_secs(10),
            register(
                &mut device,
                "0ne",
                "reg-1",
                "token",
                Poll::Every(Duration::from_millis(1)),
            ),
        )
        .await
        .expect("registered in time")
        .unwrap();
        assert_eq!(
            registered,
            Registered {
                hub: "hub.example".into(),
                device_id: "reg-1".into(),
                polls: 2,
            }
        );
        server.await.unwrap().unwrap();
    }
}
