//! What the testkit does not cover: a nats-server restart, and a node that dies without
//! saying so.

#![allow(clippy::unwrap_used)]

mod common;

use std::sync::Arc;
use std::time::Duration;

use ironhub_nats::{Names, NatsBus, NatsEventLog};
use ironhub_store::{BusError, BusMessage, DeviceBus, EventLog, NewEvent, Retention};

fn event(device: &str, body: &str) -> NewEvent {
    NewEvent {
        device_id: device.into(),
        module_id: None,
        system_properties: Default::default(),
        application_properties: Default::default(),
        body: body.as_bytes().to_vec(),
    }
}

/// While the server is down appends fail with a clear error; after it is back the log holds
/// exactly what was acknowledged and numbering continues without a gap.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_nats_server_restart_is_survived() {
    let Some(mut server) = common::server() else {
        return;
    };
    let names = Names::new(&common::unique("hub"));
    let log = NatsEventLog::open(
        server.client().await,
        &names,
        "events",
        1,
        Retention::default(),
    )
    .await
    .unwrap();
    for i in 0..5 {
        let e = log.append(event("d", &format!("m{i}"))).await.unwrap();
        assert_eq!(e.sequence_number, i);
    }
    server.kill();
    let failed = tokio::time::timeout(Duration::from_secs(30), log.append(event("d", "lost")))
        .await
        .expect("an append fails within 30 s while NATS is down");
    let message = failed
        .expect_err("no acknowledgement without a server")
        .to_string();
    assert!(message.contains("NATS"), "{message}");
    server.restart();
    // The client reconnects by itself; the first append after that is acknowledged.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let resumed = loop {
        match log.append(event("d", "m5")).await {
            Ok(e) => break e,
            Err(e) => assert!(tokio::time::Instant::now() < deadline, "not resumed: {e}"),
        }
    };
    let kept: Vec<String> = log
        .read(0, 0, 100)
        .await
        .unwrap()
        .into_iter()
        .map(|e| String::from_utf8(e.event.body).unwrap())
        .collect();
    // "lost" was never acknowledged; had it reached the stream before the kill, it would
    // stand before m5, numbered in order.
    let expected_next = kept.len() as u64 - 1;
    assert_eq!(resumed.sequence_number, expected_next);
    assert_eq!(&kept[..5], ["m0", "m1", "m2", "m3", "m4"]);
    assert_eq!(kept.last().map(String::as_str), Some("m5"));
    assert!(kept.len() <= 7);
    assert_eq!(log.bounds(0).await.unwrap().next, expected_next + 1);
}

/// Nodes starting together each open the hub's event log and create its bucket and streams at
/// the same moment. nats-server 2.9 answers some of these racing creations "subjects overlap"
/// (10065) instead of handing back the stream another node just made; every opener must still
/// get the log. Several hubs in turn, since one race is won or lost by chance.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_opening_a_log_at_once_all_get_it() {
    let Some(server) = common::server() else {
        return;
    };
    for _ in 0..40 {
        let names = Names::new(&common::unique("race"));
        let mut openers = Vec::new();
        for _ in 0..3 {
            let client = server.client().await;
            let names = names.clone();
            openers.push(tokio::spawn(async move {
                NatsEventLog::open(client, &names, "events", 4, Retention::default()).await
            }));
        }
        let mut logs = Vec::new();
        for opener in openers {
            logs.push(opener.await.unwrap().expect("every node opens the log"));
        }
        // One log: what one node appends, another reads.
        let appended = logs[0].append(event("d", "one")).await.unwrap();
        let read = logs[2].read(appended.partition, 0, 10).await.unwrap();
        assert_eq!(read.len(), 1);
        assert_eq!(read[0].event.body, b"one");
    }
}

/// A node that dies without detaching its devices (its NATS connection gone) no longer
/// counts as holding them, and a device connecting elsewhere takes over at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_nodes_devices_are_not_connected() {
    let Some(server) = common::server() else {
        return;
    };
    let names = Names::new(&common::unique("hub"));
    let a: Arc<dyn DeviceBus> = Arc::new(
        NatsBus::start(server.client().await, &names, "a")
            .await
            .unwrap(),
    );
    let b_client = server.client().await;
    let b = NatsBus::start(b_client.clone(), &names, "b").await.unwrap();
    let held = b.attach("d1").await;
    assert_eq!(a.presence("d1").await.as_deref(), Some("b"));
    // Node b dies: its connection to NATS closes with nothing said on the bus.
    drop(b_client);
    std::mem::forget(held);
    drop(b);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while a.presence("d1").await.is_some() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "node b still holds d1"
        );
        tokio::task::yield_now().await;
    }
    assert_eq!(
        a.send("d1", BusMessage::C2dAvailable).await,
        Err(BusError::NotConnected)
    );
    let mut moved = a.attach("d1").await;
    assert_eq!(a.presence("d1").await.as_deref(), Some("a"));
    a.send("d1", BusMessage::C2dAvailable).await.unwrap();
    assert_eq!(moved.messages.recv().await, Some(BusMessage::C2dAvailable));
}

/// A user and password (or a token) in the URL are the credentials the server is given.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn credentials_in_the_url_are_used() {
    let Some(server) = common::server_with(&["--user", "ironhub", "--pass", "s3cret/x"]) else {
        return;
    };
    let (host, port) = (&server.address, server.port);
    let connect = |url: String| async move {
        ironhub_nats::connect(&ironhub_nats::NatsOptions {
            url,
            ..Default::default()
        })
        .await
    };
    let refused = connect(format!("nats://{host}:{port}")).await;
    assert!(refused.is_err(), "no credentials, no connection");
    let client = connect(format!("nats://ironhub:s3cret%2Fx@{host}:{port}"))
        .await
        .unwrap();
    let names = Names::new(&common::unique("hub"));
    let log = NatsEventLog::open(client, &names, "events", 1, Retention::default())
        .await
        .unwrap();
    log.append(event("d", "with credentials")).await.unwrap();
}

/// Appends per second from 64 concurrent appenders over 16 devices, for the JetStream log
/// with 1 and 4 partitions (streams) and the embedded SQLite log; run by hand:
/// `cargo test -p ironhub-nats --test nats append_rates -- --ignored --nocapture`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a measurement, not a check"]
async fn append_rates() {
    let Some(server) = common::server() else {
        return;
    };
    async fn rate(log: Arc<dyn EventLog>) -> f64 {
        const TOTAL: usize = 8000;
        let started = std::time::Instant::now();
        let tasks: Vec<_> = (0..64)
            .map(|t| {
                let log = log.clone();
                tokio::spawn(async move {
                    for i in 0..TOTAL / 64 {
                        let body = format!("{:0>256}", i);
                        log.append(event(&format!("dev{}", t % 16), &body))
                            .await
                            .unwrap();
                    }
                })
            })
            .collect();
        for t in tasks {
            t.await.unwrap();
        }
        TOTAL as f64 / started.elapsed().as_secs_f64()
    }
    for partitions in [1, 4] {
        let names = Names::new(&common::unique("hub"));
        let log = NatsEventLog::open(
            server.client().await,
            &names,
            "events",
            partitions,
            Retention::default(),
        )
        .await
        .unwrap();
        let r = rate(Arc::new(log)).await;
        eprintln!("JetStream, {partitions} partition(s): {r:.0} appends/s");
    }
    let dir = tempfile::tempdir().unwrap();
    let sqlite = ironhub_embedded::SqliteEventLog::open(dir.path(), 4).unwrap();
    let r = rate(Arc::new(sqlite)).await;
    eprintln!("SQLite, 4 partitions: {r:.0} appends/s");
}
