//! The idle time-out: the server advertises half the threshold it enforces, a client that
//! sends empty frames stays connected, and a silent one is closed after twice the advertised
//! time.

#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use ironhub_amqp::AmqpContext;
use ironhub_embedded::{LocalBus, SqliteEventLog, SqliteStore};
use ironhub_hub::{Backends, Hub};
use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream};

const IDLE: Duration = Duration::from_secs(1);
/// An `open` with only a container id ("t"), no idle time-out of the client's own.
const OPEN: [u8; 17] = [
    0, 0, 0, 17, 2, 0, 0, 0, 0x00, 0x53, 0x10, 0xc0, 0x04, 0x01, 0xa1, 0x01, b't',
];
const EMPTY_FRAME: [u8; 8] = [0, 0, 0, 8, 2, 0, 0, 0];

async fn connect() -> (DuplexStream, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let backends = Backends {
        store: Arc::new(SqliteStore::open(dir.path()).unwrap()),
        events: Arc::new(SqliteEventLog::open(dir.path(), 2).unwrap()),
        bus: Arc::new(LocalBus::new()),
    };
    let hub = Hub::open(backends, vec!["myhub.example".into()])
        .await
        .unwrap();
    let mut ctx = AmqpContext::new(hub, 5671);
    ctx.idle_timeout = IDLE;
    let (mut client, server) = tokio::io::duplex(1 << 16);
    let peer = "127.0.0.1:1".parse().unwrap();
    tokio::spawn(ironhub_amqp::serve(server, peer, Vec::new(), ctx));
    client.write_all(b"AMQP\x00\x01\x00\x00").await.unwrap();
    client.write_all(&OPEN).await.unwrap();
    let mut header = [0u8; 8];
    client.read_exact(&mut header).await.unwrap();
    assert_eq!(&header, b"AMQP\x00\x01\x00\x00");
    (client, dir)
}

/// The next frame the server sends; `None` once it closed the connection.
async fn frame(client: &mut DuplexStream) -> Option<Vec<u8>> {
    let mut size = [0u8; 4];
    client.read_exact(&mut size).await.ok()?;
    let mut rest = vec![0u8; usize::try_from(u32::from_be_bytes(size)).unwrap() - 4];
    client.read_exact(&mut rest).await.ok()?;
    Some(rest)
}

/// Reads frames until the server closes the connection (bounded).
async fn until_closed(client: &mut DuplexStream, within: Duration) {
    tokio::time::timeout(within, async { while frame(client).await.is_some() {} })
        .await
        .expect("the connection was not closed in time");
}

#[tokio::test]
async fn a_silent_connection_is_closed_after_twice_the_advertised_idle_time() {
    let (mut client, _dir) = connect().await;
    let open = frame(&mut client).await.unwrap();
    // The open advertises 1000 ms (a uint), not the 2000 ms enforced.
    assert!(
        open.windows(5).any(|w| w == [0x70, 0, 0, 0x03, 0xe8]),
        "{open:02x?}"
    );
    let started = Instant::now();
    until_closed(&mut client, IDLE * 5).await;
    let after = started.elapsed();
    assert!(after >= IDLE * 3 / 2, "closed too early: {after:?}");
}

#[tokio::test]
async fn empty_frames_keep_a_connection_open() {
    let (mut client, _dir) = connect().await;
    frame(&mut client).await.unwrap();
    let started = Instant::now();
    // A client's heartbeat at the advertised period, for longer than the threshold.
    while started.elapsed() < IDLE * 3 {
        client.write_all(&EMPTY_FRAME).await.unwrap();
        let read = tokio::time::timeout(IDLE, frame(&mut client)).await;
        assert!(
            !matches!(read, Ok(None)),
            "closed after {:?}",
            started.elapsed()
        );
    }
    until_closed(&mut client, IDLE * 5).await;
}
