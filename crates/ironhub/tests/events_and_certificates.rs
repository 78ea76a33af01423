//! Reading telemetry back over real HTTPS: the streaming event reader from every position,
//! with filters, consumer groups and checkpoints, across a server restart; and the CA
//! certificate API with proof of possession, then an MQTT device admitted by that CA.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use ironhub::config::ServeArgs;
use ironhub::serve::{Server, start};
use ironhub_auth::{sas, unix_now};
use ironhub_hub::{AuthMethod, DeviceIdentity, SystemProperties, Telemetry};
use rumqttc::mqttbytes::v4::{ConnAck, Connect, ConnectReturnCode, Packet};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const HOST: &str = "eventhub.example";

async fn start_in(dir: &Path) -> Server {
    let args = ServeArgs {
        data_dir: Some(dir.to_owned()),
        hostnames: vec![HOST.into()],
        https_listen: Some("127.0.0.1:0".parse().unwrap()),
        mqtt_listen: Some("127.0.0.1:0".parse().unwrap()),
        ..ServeArgs::default()
    };
    start(&args.resolve().unwrap()).await.unwrap()
}

fn token(server: &Server, policy: &str) -> String {
    let p = server.hub.settings().policy(policy).unwrap();
    sas::generate(HOST, &p.primary_key, unix_now() + 3600, Some(&p.key_name)).unwrap()
}

/// Sends one request over a fresh TLS connection; returns the response with its body unread.
async fn send(
    server: &Server,
    method: &str,
    path: &str,
    auth: Option<&str>,
    body: Option<Value>,
    extra: &[(&str, &str)],
) -> hyper::Response<Incoming> {
    let mut roots = rustls::RootCertStore::empty();
    for c in ironhub_tls::read_certs(&server.ca_certificate).unwrap() {
        roots.add(c).unwrap();
    }
    let config = rustls::ClientConfig::builder_with_provider(ironhub_tls::provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let tcp = TcpStream::connect(server.https_addr).await.unwrap();
    let tls = tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(ServerName::try_from(HOST).unwrap(), tcp)
        .await
        .unwrap();
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
        .await
        .unwrap();
    tokio::spawn(connection);
    let mut request = hyper::Request::builder()
        .method(method)
        .uri(path)
        .header("host", HOST);
    if let Some(a) = auth {
        request = request.header("authorization", a);
    }
    for (k, v) in extra {
        request = request.header(*k, *v);
    }
    let bytes = body.map_or_else(Bytes::new, |b| Bytes::from(b.to_string()));
    if !bytes.is_empty() {
        request = request.header("content-type", "application/json");
    }
    sender
        .send_request(request.body(Full::new(bytes)).unwrap())
        .await
        .unwrap()
}

/// A request whose whole body is read as JSON (`null` when empty).
async fn call(
    server: &Server,
    method: &str,
    path: &str,
    auth: Option<&str>,
    body: Option<Value>,
    extra: &[(&str, &str)],
) -> (u16, hyper::HeaderMap, Value) {
    let response = send(server, method, path, auth, body, extra).await;
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    let value = if bytes.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(&bytes).unwrap()
    };
    (status, headers, value)
}

/// Reads a stream to its end (the query should carry a `timeout`): one JSON value a line.
async fn stream(server: &Server, query: &str) -> Vec<Value> {
    let auth = token(server, "service");
    let path = format!("/events/consumergroups/{query}");
    let response = send(server, "GET", &path, Some(&auth), None, &[]).await;
    assert_eq!(response.status(), 200, "{path}");
    assert_eq!(
        response.headers()["content-type"],
        "application/x-ndjson; charset=utf-8"
    );
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    std::str::from_utf8(&bytes)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn bodies(lines: &[Value]) -> Vec<Value> {
    lines.iter().map(|l| l["body"].clone()).collect()
}

async fn telemetry(server: &Server, device: &str, body: &[u8]) -> ironhub_store::Event {
    let who = DeviceIdentity {
        device_id: device.into(),
        module_id: None,
        generation_id: "1".into(),
        auth: AuthMethod::Sas,
        model_id: None,
    };
    let mut system = SystemProperties {
        message_id: Some(format!("m-{}", body.len())),
        ..SystemProperties::default()
    };
    // JSON bodies are declared JSON, as the SDKs' JSON messages are: the stream shows them
    // parsed (an undeclared body is shown as its text).
    if serde_json::from_slice::<Value>(body).is_ok() {
        system.content_type = Some("application/json".into());
    }
    let message = Telemetry {
        system,
        application: vec![("kind".into(), Some("test".into()))],
        body: body.to_vec(),
        ..Telemetry::default()
    };
    server
        .hub
        .send_telemetry(&who, message)
        .await
        .unwrap()
        .remove(0)
}

#[tokio::test]
async fn reads_from_every_position_with_checkpoints_across_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let server = start_in(dir.path()).await;
    let mut sent = Vec::new();
    for n in 0..3 {
        sent.push(telemetry(&server, "dev1", json!({"n": n}).to_string().as_bytes()).await);
        // Distinct enqueued times (milliseconds), for reading from a time.
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    sent.push(telemetry(&server, "dev2", b"plain text").await);
    sent.push(telemetry(&server, "dev1", &[0xff, 0x00]).await);
    let p1 = sent[0].partition;

    // From the start: everything, each partition in order.
    let all = stream(&server, "$Default/stream?from=start&timeout=0.5").await;
    assert_eq!(all.len(), 5);
    let dev1 = stream(
        &server,
        "$Default/stream?from=start&deviceId=dev1&timeout=0.5",
    )
    .await;
    assert_eq!(
        bodies(&dev1),
        [
            json!({"n": 0}),
            json!({"n": 1}),
            json!({"n": 2}),
            json!("/wA=")
        ]
    );
    let first = &dev1[0];
    assert_eq!(first["deviceId"], "dev1");
    assert_eq!(first["partition"], p1);
    assert_eq!(first["sequenceNumber"], sent[0].sequence_number);
    assert_eq!(first["offset"], sent[0].sequence_number.to_string());
    assert_eq!(first["systemProperties"]["message-id"], "m-7");
    assert_eq!(
        first["systemProperties"]["iothub-connection-device-id"],
        "dev1"
    );
    assert_eq!(
        first["systemProperties"]["x-opt-sequence-number"],
        sent[0].sequence_number
    );
    assert_eq!(first["applicationProperties"]["kind"], "test");
    assert_eq!(dev1[3]["bodyEncoding"], "base64");
    let dev2 = stream(
        &server,
        "$Default/stream?from=start&deviceId=dev2&timeout=0.5",
    )
    .await;
    assert_eq!(bodies(&dev2), [json!("plain text")]);

    // From a sequence number, in one partition.
    let from_seq = stream(
        &server,
        &format!(
            "$Default/stream?from=seq:{}&partition={p1}&deviceId=dev1&timeout=0.5",
            sent[1].sequence_number
        ),
    )
    .await;
    assert_eq!(
        bodies(&from_seq),
        [json!({"n": 1}), json!({"n": 2}), json!("/wA=")]
    );

    // From an enqueued time.
    let at = sent[2]
        .enqueued_time
        .to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    let from_time = stream(
        &server,
        &format!("$Default/stream?from=time:{at}&deviceId=dev1&timeout=0.5"),
    )
    .await;
    assert_eq!(bodies(&from_time)[0], json!({"n": 2}));

    // From the end: nothing old, and the response ends after the timeout.
    let began = Instant::now();
    assert!(
        stream(&server, "$Default/stream?from=end&timeout=0.5")
            .await
            .is_empty()
    );
    assert!(began.elapsed() >= Duration::from_millis(450));

    // Consumer groups and checkpoints.
    let svc = token(&server, "service");
    let (status, _, group) = call(
        &server,
        "PUT",
        "/events/consumergroups/cg1",
        Some(&svc),
        None,
        &[],
    )
    .await;
    assert_eq!(status, 201);
    assert_eq!(group["name"], "cg1");
    let (status, _, _) = call(
        &server,
        "PUT",
        "/events/consumergroups/cg1",
        Some(&svc),
        None,
        &[],
    )
    .await;
    assert_eq!(status, 200, "creating an existing group is idempotent");
    let checkpoint = format!("/events/consumergroups/cg1/partitions/{p1}/checkpoint");
    let (status, _, group) = call(
        &server,
        "PUT",
        &checkpoint,
        Some(&svc),
        Some(json!({"sequenceNumber": sent[1].sequence_number})),
        &[],
    )
    .await;
    assert_eq!(status, 200, "{group}");
    assert_eq!(
        group["partitions"][p1 as usize]["checkpointSequenceNumber"],
        sent[1].sequence_number
    );
    let resumed = stream(
        &server,
        "cg1/stream?from=checkpoint&deviceId=dev1&timeout=0.5",
    )
    .await;
    assert_eq!(bodies(&resumed), [json!({"n": 2}), json!("/wA=")]);
    // $Default has no checkpoint: it reads from the start.
    let fresh = stream(
        &server,
        "$Default/stream?from=checkpoint&deviceId=dev1&timeout=0.5",
    )
    .await;
    assert_eq!(fresh.len(), 4);

    // Azure-shaped refusals.
    let (status, headers, body) = call(
        &server,
        "GET",
        "/events/consumergroups/nope/stream?timeout=1",
        Some(&svc),
        None,
        &[],
    )
    .await;
    assert_eq!(status, 404);
    assert_eq!(headers["iothub-errorcode"], "ConsumerGroupNotFound");
    assert!(body["Message"].as_str().unwrap().starts_with("ErrorCode:"));
    for (path, want) in [
        ("/events/consumergroups/$Default/stream?from=sideways", 400),
        ("/events/consumergroups/$Default/stream?partition=99", 404),
        ("/events/consumergroups/$Default/stream?timeout=-3", 400),
    ] {
        let (status, _, body) = call(&server, "GET", path, Some(&svc), None, &[]).await;
        assert_eq!(status, want, "{path}: {body}");
    }
    let (status, _, _) = call(
        &server,
        "GET",
        "/events/consumergroups/$Default/stream",
        None,
        None,
        &[],
    )
    .await;
    assert_eq!(status, 401);
    let reader = token(&server, "registryRead");
    let (status, _, _) = call(
        &server,
        "GET",
        "/events/consumergroups/$Default/stream",
        Some(&reader),
        None,
        &[],
    )
    .await;
    assert_eq!(status, 401, "reading events needs ServiceConnect");
    let (status, _, _) = call(
        &server,
        "PUT",
        &checkpoint,
        Some(&svc),
        Some(json!({"sequenceNumber": 1000})),
        &[],
    )
    .await;
    assert_eq!(status, 400, "a checkpoint beyond the end");
    let (status, _, _) = call(
        &server,
        "DELETE",
        "/events/consumergroups/$Default",
        Some(&svc),
        None,
        &[],
    )
    .await;
    assert_eq!(status, 400);
    let (status, _, _) = call(
        &server,
        "PUT",
        "/events/consumergroups/bad%20name%21",
        Some(&svc),
        None,
        &[],
    )
    .await;
    assert_eq!(status, 400);

    // Restart: events, numbering, groups and checkpoints are all kept.
    server.shutdown().await;
    let server = start_in(dir.path()).await;
    let again = stream(&server, "$Default/stream?from=start&timeout=0.5").await;
    assert_eq!(again, all, "the same events at the same positions");
    let resumed = stream(
        &server,
        "cg1/stream?from=checkpoint&deviceId=dev1&timeout=0.5",
    )
    .await;
    assert_eq!(bodies(&resumed), [json!({"n": 2}), json!("/wA=")]);
    let next = telemetry(&server, "dev1", b"{\"n\":3}").await;
    assert_eq!(next.sequence_number, sent[4].sequence_number + 1);
    let svc = token(&server, "service");
    let (status, _, list) = call(
        &server,
        "GET",
        "/events/consumergroups",
        Some(&svc),
        None,
        &[],
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(list, json!([{"name": "$Default"}, {"name": "cg1"}]));
    let (status, _, props) = call(&server, "GET", "/events", Some(&svc), None, &[]).await;
    assert_eq!(status, 200);
    assert_eq!(props["partitionCount"], 4);
    let (status, _, _) = call(
        &server,
        "DELETE",
        "/events/consumergroups/cg1",
        Some(&svc),
        None,
        &[],
    )
    .await;
    assert_eq!(status, 204);
    let (status, _, _) = call(
        &server,
        "GET",
        "/events/consumergroups/cg1",
        Some(&svc),
        None,
        &[],
    )
    .await;
    assert_eq!(status, 404);
    server.shutdown().await;
}

#[tokio::test]
async fn events_are_flushed_as_they_arrive() {
    let dir = tempfile::tempdir().unwrap();
    let server = start_in(dir.path()).await;
    let auth = token(&server, "service");
    let response = send(
        &server,
        "GET",
        "/events/consumergroups/$Default/stream?from=end",
        Some(&auth),
        None,
        &[],
    )
    .await;
    assert_eq!(response.status(), 200);
    let mut body = response.into_body();
    for n in 0..3 {
        telemetry(&server, "live", json!({"n": n}).to_string().as_bytes()).await;
        let frame = tokio::time::timeout(Duration::from_secs(5), body.frame())
            .await
            .expect("the event is sent while the response is open")
            .unwrap()
            .unwrap();
        let line: Value =
            serde_json::from_slice(frame.data_ref().unwrap().strip_suffix(b"\n").unwrap()).unwrap();
        assert_eq!(line["body"], json!({"n": n}));
    }
    drop(body);
    server.shutdown().await;
}

fn ca(cn: &str) -> (rcgen::Certificate, rcgen::Issuer<'static, rcgen::KeyPair>) {
    let key = rcgen::KeyPair::generate().unwrap();
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, cn);
    params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let cert = params.self_signed(&key).unwrap();
    (cert, rcgen::Issuer::new(params, key))
}

fn signed(cn: &str, issuer: &rcgen::Issuer<'static, rcgen::KeyPair>) -> rcgen::Certificate {
    signed_pair(cn, issuer).0
}

fn signed_pair(
    cn: &str,
    issuer: &rcgen::Issuer<'static, rcgen::KeyPair>,
) -> (rcgen::Certificate, rcgen::KeyPair) {
    let key = rcgen::KeyPair::generate().unwrap();
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, cn);
    let cert = params.signed_by(&key, issuer).unwrap();
    (cert, key)
}

/// An MQTT CONNECT with only a client certificate (no password); returns the CONNACK code.
async fn mqtt_connect_x509(
    server: &Server,
    device: &str,
    cert: &rcgen::Certificate,
    key: &rcgen::KeyPair,
) -> ConnectReturnCode {
    let mut roots = rustls::RootCertStore::empty();
    for c in ironhub_tls::read_certs(&server.ca_certificate).unwrap() {
        roots.add(c).unwrap();
    }
    let config = rustls::ClientConfig::builder_with_provider(ironhub_tls::provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_client_auth_cert(
            vec![CertificateDer::from(cert.der().to_vec())],
            PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der())),
        )
        .unwrap();
    let tcp = TcpStream::connect(server.mqtt_addr).await.unwrap();
    let mut tls = tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(ServerName::try_from(HOST).unwrap(), tcp)
        .await
        .unwrap();
    let mut connect = Connect::new(device);
    connect.set_login(format!("{HOST}/{device}/?api-version=2021-04-12"), "");
    let mut out = bytes::BytesMut::new();
    Packet::Connect(connect)
        .write(&mut out, usize::MAX)
        .unwrap();
    tls.write_all(&out).await.unwrap();
    let mut buf = bytes::BytesMut::new();
    loop {
        match Packet::read(&mut buf, 1 << 16) {
            Ok(Packet::ConnAck(ConnAck { code, .. })) => return code,
            Ok(other) => panic!("expected CONNACK, got {other:?}"),
            Err(rumqttc::mqttbytes::Error::InsufficientBytes(_)) => {}
            Err(e) => panic!("bad packet: {e:?}"),
        }
        let n = tokio::time::timeout(Duration::from_secs(5), tls.read_buf(&mut buf))
            .await
            .unwrap()
            .unwrap();
        assert!(n > 0, "the server closed the connection before CONNACK");
    }
}

#[tokio::test]
async fn certificate_api_with_proof_of_possession() {
    let dir = tempfile::tempdir().unwrap();
    let server = start_in(dir.path()).await;
    let owner = token(&server, "iothubowner");
    let reader = token(&server, "registryRead");
    let (root, root_issuer) = ca("Fleet Root");

    let upload = json!({"properties": {"certificate": root.pem(), "isVerified": false}});
    let (status, _, _) = call(
        &server,
        "PUT",
        "/certificates/fleet",
        Some(&reader),
        Some(upload.clone()),
        &[],
    )
    .await;
    assert_eq!(status, 401, "uploading needs RegistryWrite");
    let (status, headers, created) = call(
        &server,
        "PUT",
        "/certificates/fleet",
        Some(&owner),
        Some(upload.clone()),
        &[],
    )
    .await;
    assert_eq!(status, 201, "{created}");
    let etag = created["etag"].as_str().unwrap().to_owned();
    assert_eq!(headers["etag"], format!("\"{etag}\""));
    assert_eq!(created["name"], "fleet");
    assert_eq!(created["properties"]["subject"], "CN=Fleet Root");
    assert_eq!(created["properties"]["isVerified"], false);
    assert!(
        created["properties"]["expiry"]
            .as_str()
            .unwrap()
            .ends_with(" GMT")
    );
    assert_eq!(
        created["properties"]["thumbprint"].as_str().unwrap().len(),
        40
    );

    let (status, _, _) = call(
        &server,
        "PUT",
        "/certificates/fleet",
        Some(&owner),
        Some(upload.clone()),
        &[],
    )
    .await;
    assert_eq!(status, 409);
    let with_key = format!("{}{}", root.pem(), root_issuer.key().serialize_pem());
    let (status, headers, _) = call(
        &server,
        "PUT",
        "/certificates/leaky",
        Some(&owner),
        Some(json!({"properties": {"certificate": with_key}})),
        &[],
    )
    .await;
    assert_eq!(status, 400);
    assert_eq!(headers["iothub-errorcode"], "CertificateInvalid");

    let (status, _, coded) = call(
        &server,
        "POST",
        "/certificates/fleet/generateVerificationCode",
        Some(&owner),
        None,
        &[("if-match", &format!("\"{etag}\""))],
    )
    .await;
    assert_eq!(status, 200, "{coded}");
    assert_ne!(coded["etag"], etag);
    let code = coded["properties"]["verificationCode"]
        .as_str()
        .unwrap()
        .to_owned();

    let (other, other_issuer) = ca("Other");
    drop(other);
    let forged = signed(&code, &other_issuer);
    let (status, _, _) = call(
        &server,
        "POST",
        "/certificates/fleet/verify",
        Some(&owner),
        Some(json!({"certificate": forged.pem()})),
        &[],
    )
    .await;
    assert_eq!(status, 400, "a proof signed by another key");
    let proof = signed(&code, &root_issuer);
    let (status, _, verified) = call(
        &server,
        "POST",
        "/certificates/fleet/verify",
        Some(&owner),
        Some(json!({"certificate": proof.pem()})),
        &[],
    )
    .await;
    assert_eq!(status, 200, "{verified}");
    assert_eq!(verified["properties"]["isVerified"], true);

    // A device whose certificate chains to the verified CA connects over MQTT, no password;
    // its CN must be its device id.
    let spec: ironhub_hub::model::DeviceSpec =
        serde_json::from_value(json!({"authentication": {"type": "certificateAuthority"}}))
            .unwrap();
    server.hub.put_device("dev-ca", &spec, None).await.unwrap();
    let (leaf, leaf_key) = signed_pair("dev-ca", &root_issuer);
    assert_eq!(
        mqtt_connect_x509(&server, "dev-ca", &leaf, &leaf_key).await,
        ConnectReturnCode::Success
    );
    let (wrong, wrong_key) = signed_pair("someone-else", &root_issuer);
    assert_eq!(
        mqtt_connect_x509(&server, "dev-ca", &wrong, &wrong_key).await,
        ConnectReturnCode::NotAuthorized
    );
    let (stranger, stranger_key) = signed_pair("dev-ca", &other_issuer);
    assert_eq!(
        mqtt_connect_x509(&server, "dev-ca", &stranger, &stranger_key).await,
        ConnectReturnCode::NotAuthorized
    );

    let (status, _, list) = call(&server, "GET", "/certificates", Some(&reader), None, &[]).await;
    assert_eq!(status, 200);
    assert_eq!(list["value"][0]["properties"]["isVerified"], true);
    let (status, _, _) = call(
        &server,
        "DELETE",
        "/certificates/fleet",
        Some(&owner),
        None,
        &[("if-match", "\"stale\"")],
    )
    .await;
    assert_eq!(status, 412);
    let (status, _, _) = call(
        &server,
        "DELETE",
        "/certificates/fleet",
        Some(&owner),
        None,
        &[("if-match", "*")],
    )
    .await;
    assert_eq!(status, 204);
    let (status, headers, _) = call(
        &server,
        "GET",
        "/certificates/fleet",
        Some(&reader),
        None,
        &[],
    )
    .await;
    assert_eq!(status, 404);
    assert_eq!(headers["iothub-errorcode"], "CertificateNotFound");
    assert_eq!(
        mqtt_connect_x509(&server, "dev-ca", &leaf, &leaf_key).await,
        ConnectReturnCode::NotAuthorized,
        "deleting the CA ends trust in it"
    );
    server.shutdown().await;
}
