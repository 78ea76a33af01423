//! One simulated device: connect (after provisioning, when it provisions), subscribe to what
//! the hub sends it, then send telemetry and reported-property updates at its pace while
//! answering direct methods (the request's payload echoed with status 200) and completing
//! cloud-to-device messages (PUBACK), until the run tells it to leave.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::bail;
use bytes::BytesMut;
use ironhub_auth::{sas, unix_now};
use rumqttc::mqttbytes::QoS;
use rumqttc::mqttbytes::v4::{
    Connect, ConnectReturnCode, Packet, Publish, Subscribe, SubscribeFilter,
};
use tokio::io::{AsyncWriteExt as _, WriteHalf};
use tokio::sync::{mpsc, watch};
use tokio::time::MissedTickBehavior;

use crate::config::Config;
use crate::net::{BoxStream, Dialer, read, write};
use crate::phase::Phase;
use crate::stats::{Latency, Stats, bump};

/// How long a device waits for its last PUBACKs once it has stopped sending.
const PUBACK_WAIT: Duration = Duration::from_secs(10);
/// The MQTT keep-alive a device announces (and half of which it pings at).
const KEEP_ALIVE_SECS: u16 = 60;
/// How long a device waits for its connection: TCP, TLS and CONNACK. A server over its
/// capacity may never accept; the device then fails with a `connect` error instead of
/// holding the run past its duration.
const CONNECT_WAIT: Duration = Duration::from_secs(30);
/// The IoT Hub MQTT API version the SDKs announce.
const HUB_API_VERSION: &str = "2021-04-12";

/// How a device logs in.
#[derive(Debug, Clone)]
pub enum Login {
    /// An IoT Hub device: SAS token signed with its key for `{hub}/devices/{id}`.
    Hub { host: String, key: String },
    /// Plain MQTT: no user name or password, nothing subscribed.
    Anonymous,
}

/// A device ready to connect.
#[derive(Debug, Clone)]
pub struct Device {
    /// Its place in the fleet (picks its source address and names its messages).
    pub index: usize,
    pub id: String,
    pub address: SocketAddr,
    pub login: Login,
}

/// What the reader half hands the device loop.
enum Incoming {
    PubAck(u16),
    Publish(Publish),
    Closed(String),
}

/// The message id of telemetry message `seq` of device `index`: the run, the device, the
/// sequence number and the send time (Unix microseconds), so the event-stream reader can tell
/// the run's messages apart and time them without shared state.
pub fn message_id(run: &str, index: usize, seq: u64) -> String {
    let micros = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX));
    format!("{run}.{index}.{seq}.{micros}")
}

/// The send time a [`message_id`] of run `run` carries (Unix microseconds).
pub fn sent_at(run: &str, message_id: &str) -> Option<u64> {
    let rest = message_id.strip_prefix(run)?.strip_prefix('.')?;
    rest.rsplit('.').next()?.parse().ok()
}

/// A telemetry body of `size` bytes (at least the JSON it needs): `{"seq":n,"pad":"xx…"}`.
pub fn body(seq: u64, size: usize) -> Vec<u8> {
    let head = format!("{{\"seq\":{seq},\"pad\":\"");
    let pad = size.saturating_sub(head.len() + 2);
    let mut out = Vec::with_capacity(head.len() + pad + 2);
    out.extend_from_slice(head.as_bytes());
    out.resize(head.len() + pad, b'x');
    out.extend_from_slice(b"\"}");
    out
}

impl Device {
    /// Connects, runs and leaves; `sending_done` is told once when the device stops sending
    /// (or fails), and the device disconnects when `leave` turns true.
    pub async fn run(
        self,
        config: Arc<Config>,
        dialer: Dialer,
        stats: Arc<Stats>,
        phase: Arc<Phase>,
        sending_done: mpsc::UnboundedSender<()>,
        leave: watch::Receiver<bool>,
    ) {
        let mut done = Some(sending_done);
        let result = self
            .session(&config, &dialer, &stats, &phase, &mut done, leave)
            .await;
        if let Err((kind, e)) = result {
            stats.error_because(kind, &e);
        }
        tell(&mut done);
    }

    async fn session(
        &self,
        config: &Config,
        dialer: &Dialer,
        stats: &Stats,
        phase: &Phase,
        sending_done: &mut Option<mpsc::UnboundedSender<()>>,
        mut leave: watch::Receiver<bool>,
    ) -> Result<(), (&'static str, anyhow::Error)> {
        let admitted = phase.admit().await;
        let started = Instant::now();
        let stream = tokio::time::timeout(CONNECT_WAIT, dialer.connect(self.address, self.index))
            .await
            .unwrap_or_else(|_| bail!("no connection within {CONNECT_WAIT:?}"))
            .map_err(|e| ("connect", e))?;
        let (rd, mut wr) = tokio::io::split(stream);
        let mut rd = rd;
        let mut buf = BytesMut::new();
        tokio::time::timeout(CONNECT_WAIT, self.connect(&mut wr, &mut rd, &mut buf))
            .await
            .unwrap_or_else(|_| bail!("no CONNACK within {CONNECT_WAIT:?}"))
            .map_err(|e| ("connack", e))?;
        stats.record(Latency::Connect, started.elapsed());
        bump(&stats.connected);
        phase.connected(started);
        drop(admitted);
        let hub = matches!(self.login, Login::Hub { .. });
        if hub {
            self.subscribe(&mut wr, &mut rd, &mut buf, config.twin_interval.is_some())
                .await
                .map_err(|e| ("subscribe", e))?;
        }
        let (tx, mut incoming) = mpsc::unbounded_channel();
        let reader = tokio::spawn(async move {
            loop {
                match read(&mut rd, &mut buf).await {
                    Ok(Packet::PubAck(a)) => {
                        if tx.send(Incoming::PubAck(a.pkid)).is_err() {
                            return;
                        }
                    }
                    Ok(Packet::Publish(p)) => {
                        if tx.send(Incoming::Publish(p)).is_err() {
                            return;
                        }
                    }
                    Ok(_) => {}
                    Err(e) => {
                        let _ = tx.send(Incoming::Closed(e.to_string()));
                        return;
                    }
                }
            }
        });
        let result = self
            .traffic(
                config,
                stats,
                &mut wr,
                &mut incoming,
                sending_done,
                &mut leave,
            )
            .await;
        reader.abort();
        if result.is_ok() {
            let _ = write(&mut wr, Packet::Disconnect).await;
            let _ = wr.shutdown().await;
        }
        result
    }

    async fn connect(
        &self,
        wr: &mut WriteHalf<BoxStream>,
        rd: &mut tokio::io::ReadHalf<BoxStream>,
        buf: &mut BytesMut,
    ) -> anyhow::Result<()> {
        let mut c = Connect::new(self.id.as_str());
        c.keep_alive = KEEP_ALIVE_SECS;
        if let Login::Hub { host, key } = &self.login {
            let token = sas::generate(
                &format!("{host}/devices/{}", self.id),
                key,
                unix_now() + 3600,
                None,
            )?;
            c.set_login(
                format!("{host}/{}/?api-version={HUB_API_VERSION}", self.id),
                token,
            );
        }
        write(wr, Packet::Connect(c)).await?;
        match read(rd, buf).await? {
            Packet::ConnAck(a) if a.code == ConnectReturnCode::Success => Ok(()),
            Packet::ConnAck(a) => bail!("the connection was refused: {:?}", a.code),
            other => bail!("no CONNACK: {other:?}"),
        }
    }

    /// C2D messages (QoS 1), method calls, and twin answers when it updates its twin.
    async fn subscribe(
        &self,
        wr: &mut WriteHalf<BoxStream>,
        rd: &mut tokio::io::ReadHalf<BoxStream>,
        buf: &mut BytesMut,
        twin: bool,
    ) -> anyhow::Result<()> {
        let mut filters = vec![
            SubscribeFilter::new(
                format!("devices/{}/messages/devicebound/#", self.id),
                QoS::AtLeastOnce,
            ),
            SubscribeFilter::new("$iothub/methods/POST/#".into(), QoS::AtMostOnce),
        ];
        if twin {
            filters.push(SubscribeFilter::new(
                "$iothub/twin/res/#".into(),
                QoS::AtMostOnce,
            ));
        }
        let mut s = Subscribe::new_many(filters);
        s.pkid = 1;
        write(wr, Packet::Subscribe(s)).await?;
        loop {
            match read(rd, buf).await? {
                Packet::SubAck(a) => {
                    if a.return_codes
                        .iter()
                        .any(|c| matches!(c, rumqttc::mqttbytes::v4::SubscribeReasonCode::Failure))
                    {
                        bail!("a subscription was refused");
                    }
                    return Ok(());
                }
                // A C2D message queued before the run may arrive first: complete it later.
                Packet::Publish(_) => {}
                other => bail!("no SUBACK: {other:?}"),
            }
        }
    }

    /// Sends and answers until told to leave.
    async fn traffic(
        &self,
        config: &Config,
        stats: &Stats,
        wr: &mut WriteHalf<BoxStream>,
        incoming: &mut mpsc::UnboundedReceiver<Incoming>,
        sending_done: &mut Option<mpsc::UnboundedSender<()>>,
        leave: &mut watch::Receiver<bool>,
    ) -> Result<(), (&'static str, anyhow::Error)> {
        let io = |e| ("connection", e);
        let telemetry_topic = format!("devices/{}/messages/events/", self.id);
        let qos = if config.qos1 {
            QoS::AtLeastOnce
        } else {
            QoS::AtMostOnce
        };
        // Devices start their first message spread over one interval, not all at once.
        let offset = config
            .msg_interval
            .mul_f64((self.index % 1000) as f64 / 1000.0);
        let mut tick =
            tokio::time::interval_at(tokio::time::Instant::now() + offset, config.msg_interval);
        tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let twin_every = config.twin_interval.unwrap_or(Duration::from_secs(86_400));
        let mut twin_tick =
            tokio::time::interval_at(tokio::time::Instant::now() + twin_every, twin_every);
        twin_tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let ping_every = Duration::from_secs(u64::from(KEEP_ALIVE_SECS) / 2);
        let mut ping =
            tokio::time::interval_at(tokio::time::Instant::now() + ping_every, ping_every);
        let deadline = config.deadline;
        let mut inflight: HashMap<u16, Instant> = HashMap::new();
        let (mut due, mut seq, mut pkid, mut twin_rid) = (0u64, 0u64, 0u16, 0u64);
        let mut sending = true;
        let mut drain_until: Option<tokio::time::Instant> = None;
        loop {
            if sending && config.msg_count.is_some_and(|n| seq >= n) {
                sending = false;
            }
            if sending && deadline.is_some_and(|d| tokio::time::Instant::now() >= d) {
                sending = false;
            }
            // Publish what is due, within the in-flight window.
            while sending && due > 0 && (!config.qos1 || inflight.len() < config.max_inflight) {
                due -= 1;
                let mid = message_id(&config.run_id, self.index, seq);
                let topic = if config.plain_mqtt {
                    telemetry_topic.clone()
                } else {
                    format!("{telemetry_topic}$.mid={mid}&$.ct=application%2Fjson&$.ce=utf-8")
                };
                let mut p = Publish::new(topic, qos, body(seq, config.msg_size));
                if config.qos1 {
                    pkid = pkid % u16::MAX + 1;
                    while inflight.contains_key(&pkid) {
                        pkid = pkid % u16::MAX + 1;
                    }
                    p.pkid = pkid;
                    inflight.insert(pkid, Instant::now());
                }
                write(wr, Packet::Publish(p)).await.map_err(io)?;
                bump(&stats.sent);
                seq += 1;
                if config.msg_count.is_some_and(|n| seq >= n) {
                    sending = false;
                }
            }
            if !sending && drain_until.is_none() {
                drain_until = Some(tokio::time::Instant::now() + PUBACK_WAIT);
            }
            if let Some(until) = drain_until
                && (inflight.is_empty() || tokio::time::Instant::now() >= until)
            {
                for _ in inflight.drain() {
                    stats.error("puback-timeout");
                }
                tell(sending_done);
                drain_until = Some(tokio::time::Instant::now() + Duration::from_secs(86_400 * 365));
            }
            let sleep_until = drain_until.unwrap_or_else(|| {
                deadline
                    .unwrap_or_else(|| tokio::time::Instant::now() + Duration::from_secs(86_400))
            });
            tokio::select! {
                _ = tick.tick(), if sending => due += 1,
                _ = twin_tick.tick(), if sending && config.twin_interval.is_some() => {
                    twin_rid += 1;
                    let patch = serde_json::json!({"simulator": {"seq": twin_rid, "sentAt": unix_now()}});
                    let p = Publish::new(
                        format!("$iothub/twin/PATCH/properties/reported/?$rid={twin_rid}"),
                        QoS::AtMostOnce,
                        patch.to_string().into_bytes(),
                    );
                    write(wr, Packet::Publish(p)).await.map_err(io)?;
                    bump(&stats.twin_sent);
                }
                _ = ping.tick() => write(wr, Packet::PingReq).await.map_err(io)?,
                _ = tokio::time::sleep_until(sleep_until) => {}
                changed = leave.changed() => {
                    if changed.is_err() || *leave.borrow() {
                        return Ok(());
                    }
                }
                message = incoming.recv() => match message {
                    Some(Incoming::PubAck(id)) => {
                        if let Some(at) = inflight.remove(&id) {
                            stats.record(Latency::Puback, at.elapsed());
                            bump(&stats.acknowledged);
                        }
                    }
                    Some(Incoming::Publish(p)) => self.answer(wr, stats, p).await.map_err(io)?,
                    Some(Incoming::Closed(why)) => {
                        return Err(("disconnected", anyhow::anyhow!(why)));
                    }
                    None => return Err(("disconnected", anyhow::anyhow!("the reader stopped"))),
                },
            }
        }
    }

    /// Answers what the hub sent: a C2D message is completed, a method call echoed, a twin
    /// answer counted.
    async fn answer(
        &self,
        wr: &mut WriteHalf<BoxStream>,
        stats: &Stats,
        p: Publish,
    ) -> anyhow::Result<()> {
        if let Some(rest) = p.topic.strip_prefix("$iothub/methods/POST/") {
            bump(&stats.methods_received);
            let rid = rest
                .split_once("/?")
                .map_or("", |(_, q)| q)
                .split('&')
                .find_map(|kv| kv.strip_prefix("$rid="))
                .unwrap_or("");
            let payload = if p.payload.is_empty() {
                b"null".to_vec()
            } else {
                p.payload.to_vec()
            };
            let answer = Publish::new(
                format!("$iothub/methods/res/200/?$rid={rid}"),
                QoS::AtMostOnce,
                payload,
            );
            write(wr, Packet::Publish(answer)).await?;
            bump(&stats.methods_answered);
        } else if let Some(rest) = p.topic.strip_prefix("$iothub/twin/res/") {
            match rest.split('/').next() {
                Some("200" | "204") => bump(&stats.twin_accepted),
                Some(status) => stats.error(&format!("twin-{status}")),
                None => stats.error("twin"),
            }
        } else if p.topic.starts_with("devices/") && p.topic.contains("/messages/devicebound/") {
            bump(&stats.c2d_received);
            if p.qos == QoS::AtLeastOnce {
                write(
                    wr,
                    Packet::PubAck(rumqttc::mqttbytes::v4::PubAck::new(p.pkid)),
                )
                .await?;
                bump(&stats.c2d_completed);
            }
        }
        Ok(())
    }
}

/// Tells the run, once, that this device has stopped sending.
fn tell(done: &mut Option<mpsc::UnboundedSender<()>>) {
    if let Some(tx) = done.take() {
        let _ = tx.send(());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn message_ids_carry_their_run_and_send_time() {
        let id = message_id("r1", 7, 42);
        assert!(id.starts_with("r1.7.42."), "{id}");
        let at = sent_at("r1", &id).unwrap();
        assert!(at > 1_600_000_000_000_000, "{at}");
        assert_eq!(sent_at("r2", &id), None);
        assert_eq!(sent_at("r1", "other"), None);
    }

    #[test]
    fn bodies_have_the_asked_size_and_are_json() {
        for size in [0, 10, 64, 1000] {
            let b = body(3, size);
            let v: serde_json::Value = serde_json::from_slice(&b).unwrap();
            assert_eq!(v["seq"], 3);
            assert!(b.len() == size || size < 20, "{size}: {}", b.len());
        }
    }
}
