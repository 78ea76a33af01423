//! Webhook endpoints against real HTTP receivers: retries until the receiver accepts, order
//! per partition, exact bodies and headers, checkpoints that survive a restart, and
//! dead-lettering that leaves the other endpoints alone.

mod common;

use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use common::*;
use ironhub_endpoints::{EndpointKind, Health, Pump, SinkContext, dead_letter, sink, validate};
use ironhub_store::eventlog::partition_for;
use serde_json::json;
use tokio::sync::Notify;

/// A receiver that answers `fail_with` to the first `failures` requests, then 200.
#[derive(Default)]
struct Receiver {
    failures: Mutex<u32>,
    fail_with: u16,
    accepted: Mutex<Vec<(HeaderMap, Bytes)>>,
    attempts: Mutex<u32>,
    changed: Notify,
}

async fn receive(State(r): State<Arc<Receiver>>, headers: HeaderMap, body: Bytes) -> StatusCode {
    *r.attempts.lock().expect("lock") += 1;
    let fail = {
        let mut failures = r.failures.lock().expect("lock");
        let fail = *failures > 0;
        if fail {
            *failures -= 1;
        }
        fail
    };
    let status = if fail {
        StatusCode::from_u16(r.fail_with).expect("status")
    } else {
        r.accepted.lock().expect("lock").push((headers, body));
        StatusCode::OK
    };
    r.changed.notify_waiters();
    status
}

/// Starts a receiver on the test network; returns its URL.
async fn start_receiver(receiver: Arc<Receiver>) -> String {
    let listener = tokio::net::TcpListener::bind((host(), 0))
        .await
        .expect("bind the receiver");
    let address = listener.local_addr().expect("address");
    let app = Router::new()
        .route("/in", post(receive))
        .with_state(receiver);
    tokio::spawn(async move { axum::serve(listener, app).await });
    format!("http://{address}/in")
}

fn webhook(name: &str, url: &str, max: u32) -> Arc<dyn ironhub_endpoints::Sink> {
    let settings = validate(
        EndpointKind::Webhooks,
        &json!({"name": name, "url": url, "maxDeliveryCount": max,
                "headers": {"x-api-key": "secret"}}),
    )
    .expect("valid settings");
    sink(
        &settings,
        &SinkContext {
            hub_name: "hub".into(),
            file_root: std::env::temp_dir(),
        },
    )
    .expect("sink")
}

/// A pump delivering `stream` to a webhook at `url`.
fn webhook_pump(
    name: &str,
    stream: &Arc<dyn ironhub_store::EventLog>,
    url: &str,
    max: u32,
    dead: &Arc<dyn ironhub_store::EventLog>,
) -> Pump {
    Pump::start(
        name,
        stream.clone(),
        webhook(name, url, max),
        dead.clone(),
        fast(max),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retries_until_the_receiver_accepts_and_keeps_order_per_partition() {
    let dir = tempfile::tempdir().expect("tempdir");
    let stream = open_log(&dir.path().join("stream"), 2);
    let dead = open_log(&dir.path().join("dead"), 1);
    let receiver = Arc::new(Receiver {
        failures: Mutex::new(3),
        fail_with: 503,
        ..Receiver::default()
    });
    let url = start_receiver(receiver.clone()).await;
    // Two devices on different partitions, bodies binary and JSON.
    let devices = ["dev-a", "dev-b"];
    assert_ne!(partition_for(devices[0], 2), partition_for(devices[1], 2));
    let mut messages = Vec::new();
    for i in 0..5u8 {
        for d in devices {
            messages.push(message(d, &[i, 0, 255, b'\n', i], None));
        }
    }
    messages.push(message("dev-a", br#"{"t": 1}"#, Some("application/json")));
    let appended = append_all(&stream, messages).await;

    let pump = webhook_pump("hook", &stream, &url, 10, &dead);
    let status = wait_status(&pump, "11 deliveries", |s| s.delivered == 11).await;
    assert_eq!(status.health_status, Health::Healthy);
    assert_eq!(status.dead_lettered, 0);
    assert_error(&status, "503");
    assert_eq!(*receiver.attempts.lock().expect("lock"), 14);

    let accepted = receiver.accepted.lock().expect("lock").clone();
    assert_eq!(accepted.len(), 11, "each message exactly once");
    for d in devices {
        let sent: Vec<&[u8]> = appended
            .iter()
            .filter(|e| e.event.device_id == d)
            .map(|e| e.event.body.as_slice())
            .collect();
        let got: Vec<&[u8]> = accepted
            .iter()
            .filter(|(h, _)| h["iothub-connection-device-id"] == d)
            .map(|(_, b)| b.as_ref())
            .collect();
        assert_eq!(got, sent, "bodies of {d}, exact and in order");
    }
    let (headers, body) = accepted
        .iter()
        .find(|(_, b)| b.as_ref() == br#"{"t": 1}"#)
        .expect("the JSON message");
    assert_eq!(body.as_ref(), br#"{"t": 1}"#);
    assert_eq!(headers["content-type"], "application/json");
    assert_eq!(headers["iothub-content-encoding"], "utf-8");
    assert_eq!(headers["iothub-app-level"], "high");
    assert_eq!(headers["iothub-app-bare"], "");
    assert_eq!(headers["x-api-key"], "secret");
    let last = appended.last().expect("appended");
    assert_eq!(
        headers["ironhub-delivery-id"],
        format!("{}-{}", last.partition, last.sequence_number).as_str()
    );
    let (binary_headers, _) = &accepted[0];
    assert_eq!(binary_headers["content-type"], "application/octet-stream");

    // Checkpoints hold: a new pump after a stop delivers only what is new.
    pump.stop().await;
    for p in 0..2 {
        let bounds = stream.bounds(p).await.expect("bounds");
        assert_eq!(
            stream.checkpoint("$Default", p).await.expect("checkpoint"),
            Some(bounds.next)
        );
    }
    append_all(&stream, vec![message("dev-b", b"after restart", None)]).await;
    let pump = webhook_pump("hook", &stream, &url, 10, &dead);
    wait_status(&pump, "1 delivery", |s| s.delivered == 1).await;
    let accepted = receiver.accepted.lock().expect("lock").clone();
    assert_eq!(accepted.len(), 12);
    assert_eq!(accepted[11].1.as_ref(), b"after restart");
    assert!(read_all(&dead).await.is_empty());
    pump.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_receiver_dead_letters_and_the_others_are_unaffected() {
    let dir = tempfile::tempdir().expect("tempdir");
    // The router appends each routed message to every endpoint's own stream.
    let broken_stream = open_log(&dir.path().join("broken"), 2);
    let refusing_stream = open_log(&dir.path().join("refusing"), 2);
    let good_stream = open_log(&dir.path().join("good"), 2);
    let dead = open_log(&dir.path().join("dead"), 1);
    let broken = Arc::new(Receiver {
        failures: Mutex::new(u32::MAX),
        fail_with: 500,
        ..Receiver::default()
    });
    let refusing = Arc::new(Receiver {
        failures: Mutex::new(u32::MAX),
        fail_with: 400,
        ..Receiver::default()
    });
    let good = Arc::new(Receiver::default());
    let broken_url = start_receiver(broken.clone()).await;
    let refusing_url = start_receiver(refusing.clone()).await;
    let good_url = start_receiver(good.clone()).await;
    // A configuration may ask whether an endpoint is up before taking it.
    webhook("good", &good_url, 3).probe().await.expect("up");
    let closed = {
        let listener = std::net::TcpListener::bind((host(), 0)).expect("bind");
        listener.local_addr().expect("address")
    };
    let down = webhook("down", &format!("http://{closed}/in"), 3)
        .probe()
        .await
        .expect_err("down");
    assert!(down.message.contains("cannot connect"), "{down}");
    assert!(down.retryable);
    for stream in [&broken_stream, &refusing_stream, &good_stream] {
        append_all(
            stream,
            vec![
                message("d1", b"one", None),
                message("d2", b"two", None),
                message("d1", b"three", None),
            ],
        )
        .await;
    }
    let broken_pump = webhook_pump("broken", &broken_stream, &broken_url, 3, &dead);
    let refusing_pump = webhook_pump("refusing", &refusing_stream, &refusing_url, 3, &dead);
    let good_pump = webhook_pump("good", &good_stream, &good_url, 3, &dead);
    let status = wait_status(&broken_pump, "3 dead letters", |s| s.dead_lettered == 3).await;
    assert_eq!(status.health_status, Health::Dead);
    assert_eq!(status.delivered, 0);
    assert_error(&status, "HTTP 500");
    assert_eq!(*broken.attempts.lock().expect("lock"), 9, "3 attempts each");
    let status = wait_status(&refusing_pump, "3 dead letters", |s| s.dead_lettered == 3).await;
    assert_eq!(status.health_status, Health::Dead);
    assert_eq!(
        *refusing.attempts.lock().expect("lock"),
        3,
        "a 400 is final"
    );
    let status = wait_status(&good_pump, "3 deliveries", |s| s.delivered == 3).await;
    assert_eq!(status.health_status, Health::Healthy);
    let bodies: Vec<Vec<u8>> = good
        .accepted
        .lock()
        .expect("lock")
        .iter()
        .map(|(_, b)| b.to_vec())
        .collect();
    assert_eq!(bodies.len(), 3);

    // The dead letters are readable, with why, how often and when.
    let letters = read_all(&dead).await;
    assert_eq!(letters.len(), 6);
    let from = |name: &str| {
        letters
            .iter()
            .filter(|e| e.event.system_properties[dead_letter::ENDPOINT] == name)
            .collect::<Vec<_>>()
    };
    let broken_letters = from("broken");
    assert_eq!(broken_letters.len(), 3);
    for letter in &broken_letters {
        let props = &letter.event.system_properties;
        assert_eq!(props[dead_letter::ATTEMPTS], "3");
        assert!(props[dead_letter::REASON].contains("HTTP 500"), "{props:?}");
        assert!(chrono::DateTime::parse_from_rfc3339(&props[dead_letter::TIME]).is_ok());
        assert_eq!(props["iothub-connection-device-id"], letter.event.device_id);
    }
    let mut bodies: Vec<&[u8]> = broken_letters
        .iter()
        .map(|e| e.event.body.as_slice())
        .collect();
    bodies.sort();
    assert_eq!(bodies, [b"one".as_slice(), b"three", b"two"]);
    for letter in from("refusing") {
        assert_eq!(letter.event.system_properties[dead_letter::ATTEMPTS], "1");
        assert!(letter.event.system_properties[dead_letter::REASON].contains("HTTP 400"));
    }
    // Past the dead letters, the checkpoints moved on: nothing is retried for ever.
    for p in 0..2 {
        let next = broken_stream.bounds(p).await.expect("bounds").next;
        assert_eq!(
            broken_stream
                .checkpoint("$Default", p)
                .await
                .expect("checkpoint"),
            Some(next).filter(|n| *n > 0)
        );
    }
    broken_pump.stop().await;
    refusing_pump.stop().await;
    good_pump.stop().await;
}

/// An HTTPS receiver with a certificate of a CA of its own; answers 200 and keeps the bodies.
async fn start_tls_receiver(
    dir: &std::path::Path,
) -> (String, std::path::PathBuf, Arc<Mutex<Vec<Vec<u8>>>>) {
    use http_body_util::BodyExt as _;
    let files = ironhub_tls::ensure_certificates(dir, &[host()]).expect("certificates");
    let config = ironhub_tls::server_config(&files.server_chain, &files.server_key, true)
        .expect("server config");
    let acceptor = tokio_rustls::TlsAcceptor::from(config);
    let listener = tokio::net::TcpListener::bind((host(), 0))
        .await
        .expect("bind");
    let address = listener.local_addr().expect("address");
    let bodies = Arc::new(Mutex::new(Vec::new()));
    let kept = bodies.clone();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            let kept = kept.clone();
            tokio::spawn(async move {
                // A client that does not trust the certificate ends here.
                let Ok(tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let service = hyper::service::service_fn(
                    move |request: hyper::Request<hyper::body::Incoming>| {
                        let kept = kept.clone();
                        async move {
                            let body = request.into_body().collect().await?.to_bytes();
                            kept.lock().expect("lock").push(body.to_vec());
                            Ok::<_, hyper::Error>(hyper::Response::new(http_body_util::Empty::<
                                Bytes,
                            >::new(
                            )))
                        }
                    },
                );
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(tls), service)
                    .await;
            });
        }
    });
    (format!("https://{address}/in"), files.ca, bodies)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_receivers_are_trusted_through_the_ca_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (url, ca, bodies) = start_tls_receiver(&dir.path().join("tls")).await;
    let context = SinkContext {
        hub_name: "hub".into(),
        file_root: dir.path().to_path_buf(),
    };
    let stream = open_log(&dir.path().join("stream"), 1);
    let untrusting_stream = open_log(&dir.path().join("untrusting"), 1);
    let dead = open_log(&dir.path().join("dead"), 1);
    for s in [&stream, &untrusting_stream] {
        append_all(s, vec![message("d1", b"\x01secret\x02", None)]).await;
    }
    let trusting = validate(
        EndpointKind::Webhooks,
        &json!({"name": "tls", "url": url, "caFile": ca}),
    )
    .expect("valid");
    let untrusting = validate(
        EndpointKind::Webhooks,
        &json!({"name": "untrusting", "url": url, "maxDeliveryCount": 2}),
    )
    .expect("valid");
    let pump = Pump::start(
        "tls",
        stream,
        sink(&trusting, &context).expect("sink"),
        dead.clone(),
        fast(2),
    );
    let other = Pump::start(
        "untrusting",
        untrusting_stream,
        sink(&untrusting, &context).expect("sink"),
        dead.clone(),
        fast(2),
    );
    wait_status(&pump, "1 delivery", |s| s.delivered == 1).await;
    assert_eq!(*bodies.lock().expect("lock"), [b"\x01secret\x02".to_vec()]);
    let status = wait_status(&other, "1 dead letter", |s| s.dead_lettered == 1).await;
    assert_error(&status, "certificate not trusted");
    assert_error(&status, "caFile");
    pump.stop().await;
    other.stop().await;
}
