//! ironhub-only latencies, one request at a time on loopback: a direct method's round trip as
//! the service sees it (`POST /twins/{id}/methods` answered by a device over MQTT), and a
//! desired-property patch's way to the device (`PATCH /twins/{id}` until the device reads the
//! patch on `$iothub/twin/PATCH/properties/desired/`).

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use bytes::{Bytes, BytesMut};
use http_body_util::{BodyExt as _, Full};
use hyper::client::conn::http1::SendRequest;
use hyper::{Request, header};
use hyper_util::rt::TokioIo;
use rumqttc::mqttbytes::QoS;
use rumqttc::mqttbytes::v4::{Packet, Publish, Subscribe};
use serde_json::json;
use tokio::sync::{mpsc, oneshot};

use crate::net::{HOST, Tls, read, tls_connect, write};

/// The service API version the SDKs send.
const API_VERSION: &str = "2021-04-12";

/// Sorted latencies of `count` requests (after `warmup` unmeasured ones).
pub struct Latencies {
    pub methods: Vec<Duration>,
    pub desired: Vec<Duration>,
}

/// Measures both with device `device` (connected as `tls`, nothing subscribed yet) and the
/// service's SAS token `token`, through the HTTPS port `https_port`.
pub async fn measure(
    config: Arc<rustls::ClientConfig>,
    https_port: u16,
    token: &str,
    device: &str,
    tls: Tls,
    count: usize,
    warmup: usize,
) -> anyhow::Result<Latencies> {
    let (patches, mut seen) = mpsc::unbounded_channel();
    let (subscribed, ready) = oneshot::channel();
    let responder = tokio::spawn(respond(tls, subscribed, patches));
    let service = tls_connect(config, https_port).await?;
    let (mut send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(service)).await?;
    let conn = tokio::spawn(conn);
    let measured = async {
        tokio::time::timeout(Duration::from_secs(5), ready)
            .await
            .context("no SUBACK in 5 s")?
            .context("the device's connection ended")?;
        let mut methods = Vec::with_capacity(count);
        for i in 0..warmup + count {
            let started = Instant::now();
            call_method(&mut send, token, device).await?;
            if i >= warmup {
                methods.push(started.elapsed());
            }
        }
        let mut desired = Vec::with_capacity(count);
        for i in 0..warmup + count {
            let started = Instant::now();
            patch_desired(&mut send, token, device, i).await?;
            let arrived = tokio::time::timeout(Duration::from_secs(5), seen.recv())
                .await
                .context("a desired patch did not reach the device in 5 s")?
                .context("the device's connection ended")?;
            if i >= warmup {
                desired.push(arrived.saturating_duration_since(started));
            }
        }
        methods.sort();
        desired.sort();
        anyhow::Ok(Latencies { methods, desired })
    }
    .await;
    responder.abort();
    drop(send);
    conn.abort();
    measured
}

/// The device: subscribes to methods and desired patches, answers every method with 200 and
/// reports when each patch arrived.
async fn respond(
    mut tls: Tls,
    subscribed: oneshot::Sender<()>,
    patches: mpsc::UnboundedSender<Instant>,
) -> anyhow::Result<()> {
    let mut s = Subscribe::new("$iothub/methods/POST/#", QoS::AtMostOnce);
    s.add(
        "$iothub/twin/PATCH/properties/desired/#".into(),
        QoS::AtMostOnce,
    );
    s.pkid = 1;
    write(&mut tls, Packet::Subscribe(s)).await?;
    let mut buf = BytesMut::new();
    let mut subscribed = Some(subscribed);
    loop {
        let p = match read(&mut tls, &mut buf).await? {
            Packet::Publish(p) => p,
            Packet::SubAck(_) => {
                if let Some(s) = subscribed.take() {
                    let _ = s.send(());
                }
                continue;
            }
            _ => continue,
        };
        if p.topic
            .starts_with("$iothub/twin/PATCH/properties/desired/")
        {
            let _ = patches.send(Instant::now());
        } else if let Some(rest) = p.topic.strip_prefix("$iothub/methods/POST/") {
            let rid = rest.split("$rid=").nth(1).unwrap_or_default();
            let answer = Publish::new(
                format!("$iothub/methods/res/200/?$rid={rid}"),
                QoS::AtMostOnce,
                b"{}".to_vec(),
            );
            write(&mut tls, Packet::Publish(answer)).await?;
        }
    }
}

async fn call_method(
    send: &mut SendRequest<Full<Bytes>>,
    token: &str,
    device: &str,
) -> anyhow::Result<()> {
    let body = json!({"methodName": "ping", "payload": {}, "responseTimeoutInSeconds": 5});
    let status = call(
        send,
        "POST",
        &format!("/twins/{device}/methods?api-version={API_VERSION}"),
        token,
        body,
    )
    .await?;
    if status != 200 {
        bail!("the method call answered {status}");
    }
    Ok(())
}

async fn patch_desired(
    send: &mut SendRequest<Full<Bytes>>,
    token: &str,
    device: &str,
    n: usize,
) -> anyhow::Result<()> {
    let body = json!({"properties": {"desired": {"n": n}}});
    let status = call(
        send,
        "PATCH",
        &format!("/twins/{device}?api-version={API_VERSION}"),
        token,
        body,
    )
    .await?;
    if status != 200 {
        bail!("the twin patch answered {status}");
    }
    Ok(())
}

/// One service REST call on the kept-alive connection; returns the status (the body is read
/// and dropped).
async fn call(
    send: &mut SendRequest<Full<Bytes>>,
    method: &str,
    path: &str,
    token: &str,
    body: serde_json::Value,
) -> anyhow::Result<u16> {
    let request = Request::builder()
        .method(method)
        .uri(path)
        .header(header::HOST, HOST)
        .header(header::AUTHORIZATION, token)
        .header(header::CONTENT_TYPE, "application/json; charset=utf-8")
        .body(Full::new(Bytes::from(body.to_string())))?;
    send.ready().await?;
    let response = send
        .send_request(request)
        .await
        .map_err(|e| anyhow::anyhow!("{method} {path}: {e:?}"))?;
    let status = response.status().as_u16();
    response.into_body().collect().await?;
    Ok(status)
}
