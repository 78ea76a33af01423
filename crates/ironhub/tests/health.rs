//! Health and drain end to end: `/health/live` and `/health/ready` on the HTTPS port and on
//! the plain-HTTP `--health-listen` port, readiness 503 once a drain begins, and a stop that
//! closes device connections after their acknowledgements and records them disconnected.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use common::{Client, HOST, TestHub};
use http_body_util::{BodyExt as _, Empty};
use hyper_util::rt::TokioIo;
use ironhub::config::ServeArgs;
use ironhub::serve::start;
use ironhub_auth::unix_now;
use rumqttc::mqttbytes::QoS;
use rumqttc::mqttbytes::v4::{Connect, ConnectReturnCode, Packet};
use rustls::pki_types::ServerName;
use serde_json::Value;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;

/// An address of this test run's loopback net (`IRONHUB_TEST_NET`, default 127.0.0), port 0.
fn test_address(last: u8) -> SocketAddr {
    let net = std::env::var("IRONHUB_TEST_NET").unwrap_or_else(|_| "127.0.0".to_owned());
    format!("{net}.{last}:0").parse().unwrap()
}

/// A server with a plain-HTTP health port, on this run's loopback net.
async fn hub_with_health_port() -> TestHub {
    let dir = tempfile::tempdir().unwrap();
    let args = ServeArgs {
        data_dir: Some(dir.path().to_owned()),
        hostnames: vec![HOST.into()],
        https_listen: Some(test_address(1)),
        mqtt_listen: Some(test_address(1)),
        health_listen: Some(test_address(1)),
        drain_timeout_seconds: Some(5),
        ..ServeArgs::default()
    };
    let server = start(&args.resolve().unwrap()).await.unwrap();
    TestHub { server, _dir: dir }
}

/// One GET over `io`: the status and the JSON body (`null` when empty).
async fn get_over<Io>(io: Io, path: &str) -> (u16, Value)
where
    Io: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(io))
        .await
        .unwrap();
    tokio::spawn(connection);
    let request = hyper::Request::get(path)
        .header("host", HOST)
        .body(Empty::<Bytes>::new())
        .unwrap();
    let response = sender.send_request(request).await.unwrap();
    let status = response.status().as_u16();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    let json = if body.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(&body).unwrap()
    };
    (status, json)
}

/// GET over HTTPS, trusting the server's CA, without credentials.
async fn https_get(hub: &TestHub, path: &str) -> (u16, Value) {
    let tcp = TcpStream::connect(hub.server.https_addr).await.unwrap();
    let tls = hub
        .tls_connector(None)
        .connect(ServerName::try_from(HOST).unwrap(), tcp)
        .await
        .unwrap();
    get_over(tls, path).await
}

/// GET over the plain-HTTP health port.
async fn plain_get(hub: &TestHub, path: &str) -> (u16, Value) {
    let addr = hub.server.health_addr.expect("a health port");
    get_over(TcpStream::connect(addr).await.unwrap(), path).await
}

/// An MQTT device of `hub`, connected with a SAS token.
async fn connected_device(hub: &TestHub, id: &str) -> Client {
    let key = hub.device(id, serde_json::json!({})).await;
    let mut c = hub.connect(None).await;
    let mut connect = Connect::new(id);
    connect.clean_session = false;
    connect.set_login(
        format!("{HOST}/{id}/?api-version=2021-04-12"),
        hub.token(id, &key, unix_now() + 3600),
    );
    assert_eq!(c.handshake(connect).await, ConnectReturnCode::Success);
    c
}

#[tokio::test]
async fn live_and_ready_answer_on_both_ports_without_credentials_or_api_version() {
    let hub = hub_with_health_port().await;
    for path in ["/health/live", "/health/live?api-version=not-a-version"] {
        assert_eq!(https_get(&hub, path).await.0, 200, "{path}");
        assert_eq!(plain_get(&hub, path).await.0, 200, "{path}");
    }
    let (status, body) = https_get(&hub, "/health/ready").await;
    assert_eq!((status, &body), (200, &serde_json::json!({"ready": true})));
    let (status, body) = plain_get(&hub, "/health/ready").await;
    assert_eq!((status, &body), (200, &serde_json::json!({"ready": true})));
    // The plain port serves nothing else; the HTTPS port's other routes still check
    // credentials.
    assert_eq!(plain_get(&hub, "/devices").await.0, 404);
    assert_eq!(
        https_get(&hub, "/devices?api-version=2021-04-12").await.0,
        401
    );
    hub.server.shutdown().await;
}

#[tokio::test]
async fn readiness_is_503_once_a_drain_begins_while_liveness_stays_200() {
    let hub = hub_with_health_port().await;
    assert_eq!(plain_get(&hub, "/health/ready").await.0, 200);
    hub.server.hub.drain().begin();
    for (status, body) in [
        https_get(&hub, "/health/ready").await,
        plain_get(&hub, "/health/ready").await,
    ] {
        assert_eq!(status, 503);
        assert_eq!(
            body,
            serde_json::json!({"ready": false, "failed": ["draining"]})
        );
    }
    assert_eq!(plain_get(&hub, "/health/live").await.0, 200);
    hub.server.shutdown().await;
}

#[tokio::test]
async fn a_stop_closes_device_connections_after_their_acknowledgements() {
    let hub = hub_with_health_port().await;
    let mut device = connected_device(&hub, "d1").await;
    device
        .publish("devices/d1/messages/events/", QoS::AtLeastOnce, b"first")
        .await;
    assert!(matches!(device.recv().await, Some(Packet::PubAck(_))));
    // A second message sent just before the stop: answered (durable) or not at all.
    device
        .publish("devices/d1/messages/events/", QoS::AtLeastOnce, b"second")
        .await;
    let domain = hub.server.hub.clone();
    let TestHub { server, _dir } = hub;
    let stopping = tokio::spawn(server.shutdown());
    let mut acknowledged = 1;
    loop {
        match device.recv().await {
            Some(Packet::PubAck(_)) => acknowledged += 1,
            Some(other) => panic!("unexpected {other:?}"),
            None => break,
        }
    }
    tokio::time::timeout(Duration::from_secs(10), stopping)
        .await
        .expect("the stop ends within its drain timeout")
        .unwrap();
    let log = domain.events();
    let partition = ironhub_store::eventlog::partition_for("d1", log.partition_count());
    let stored = log.read(partition, 0, 10).await.unwrap();
    assert!(
        stored.len() >= acknowledged,
        "{acknowledged} acknowledged, {} stored",
        stored.len()
    );
    assert_eq!(
        domain.get_device("d1").await.unwrap().connection_state,
        ironhub_store::ConnectionState::Disconnected
    );
    assert_eq!(domain.drain().open_connections(), 0);
}

#[tokio::test]
async fn a_device_connecting_while_draining_is_told_the_server_is_unavailable() {
    let hub = hub_with_health_port().await;
    let key = hub.device("late", serde_json::json!({})).await;
    hub.server.hub.drain().begin();
    let (_client, code) = hub.connect_sas("late", &key, false).await;
    assert_eq!(code, ConnectReturnCode::ServiceUnavailable);
    assert_eq!(
        hub.server
            .hub
            .get_device("late")
            .await
            .unwrap()
            .connection_state,
        ironhub_store::ConnectionState::Disconnected
    );
    hub.server.shutdown().await;
}
