//! Reading every event of the hub's built-in endpoint back, one reader a partition, from the
//! start: over AMQP as an Event Hubs client reads (`azure-eventhub`: a receiver on
//! `{entity}/ConsumerGroups/$Default/Partitions/{p}` with the selector filter
//! `amqp.annotation.x-opt-offset > '-1'` and a link credit of its prefetch, 300 by default,
//! after a CBS `put-token` of a service token), or over HTTPS through the NDJSON stream
//! (`GET /events/consumergroups/$Default/stream?from=start&partition={p}`). Readers stop once
//! all of them together have read the expected number of events; a reader that waits too long
//! for its next one fails the read (events missing).

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use bytes::Bytes;
use fe2o3_amqp::Receiver;
use fe2o3_amqp::link::receiver::CreditMode;
use fe2o3_amqp::types::messaging::{Body, Source};
use fe2o3_amqp::types::primitives::{Symbol, Value};
use http_body_util::{BodyExt as _, Empty};
use hyper::{Request, header};
use hyper_util::rt::TokioIo;
use serde_amqp::described::Described;
use serde_amqp::descriptor::Descriptor;
use tokio::sync::watch;

use crate::amqp_device::AmqpClient;
use crate::net::{HOST, tls_connect};

/// The selector filter's name (Apache's legacy AMQP filters, which Event Hubs uses).
const SELECTOR_FILTER: &str = "apache.org:selector-filter:string";
/// What `azure-eventhub` asks for to read a partition from its start.
const FROM_START: &str = "amqp.annotation.x-opt-offset > '-1'";
/// Longest a reader waits for its next event while events are still expected.
const STALL: Duration = Duration::from_secs(30);

/// Where the readers read and how they authenticate.
pub struct Endpoint {
    pub config: Arc<rustls::ClientConfig>,
    /// The AMQP port for [`read_amqp`], the HTTPS port for [`read_rest`].
    pub port: u16,
    /// The Event Hubs-compatible entity (the hub's name).
    pub entity: String,
    pub partitions: u32,
    /// A service SAS token with ServiceConnect.
    pub token: String,
}

/// The count the readers share and the signal that it reached `expected`.
struct Progress {
    read: AtomicUsize,
    expected: usize,
    done: watch::Sender<bool>,
}

impl Progress {
    fn new(expected: usize) -> Arc<Self> {
        Arc::new(Self {
            read: AtomicUsize::new(0),
            expected,
            done: watch::Sender::new(expected == 0),
        })
    }

    /// Counts `n` events read; true once every expected event was.
    fn add(&self, n: usize) -> bool {
        let read = self.read.fetch_add(n, Ordering::AcqRel) + n;
        if read >= self.expected {
            self.done.send_replace(true);
            return true;
        }
        false
    }

    fn shortfall(&self) -> String {
        format!(
            "{} of {} events read",
            self.read.load(Ordering::Acquire),
            self.expected
        )
    }
}

/// Reads `expected` events over AMQP, a connection and a receiver a partition (the
/// connections opened and their tokens put before the clock starts); returns events per
/// second.
pub async fn read_amqp(endpoint: &Endpoint, expected: usize, credit: u32) -> anyhow::Result<f64> {
    let mut clients = Vec::new();
    for p in 0..endpoint.partitions {
        let mut client = AmqpClient::open(
            endpoint.config.clone(),
            endpoint.port,
            &format!("reader-{p}"),
        )
        .await?;
        let audience = format!("amqps://{HOST}/{}", endpoint.entity);
        client.put_token(&audience, endpoint.token.clone()).await?;
        clients.push(client);
    }
    let progress = Progress::new(expected);
    let started = Instant::now();
    let mut tasks = Vec::new();
    for (p, mut client) in clients.into_iter().enumerate() {
        let address = format!(
            "amqps://{HOST}/{}/ConsumerGroups/$Default/Partitions/{p}",
            endpoint.entity
        );
        let progress = progress.clone();
        tasks.push(tokio::spawn(async move {
            let filter = Described {
                descriptor: Descriptor::Name(Symbol::from(SELECTOR_FILTER)),
                value: Value::String(FROM_START.into()),
            };
            let source = Source::builder()
                .address(address.as_str())
                .add_to_filter(SELECTOR_FILTER, filter)
                .build();
            let mut receiver = Receiver::builder()
                .name(format!("reader-{p}"))
                .source(source)
                .credit_mode(CreditMode::Auto(credit))
                .attach(&mut client.session)
                .await
                .with_context(|| format!("attaching a receiver to {address}"))?;
            let read = receive(&mut receiver, &progress).await;
            let _ = receiver.close().await;
            client.close().await;
            read
        }));
    }
    for t in tasks {
        t.await??;
    }
    #[allow(clippy::cast_precision_loss)]
    Ok(expected as f64 / started.elapsed().as_secs_f64())
}

/// One partition's receiver until every reader together has read the expected events.
async fn receive(receiver: &mut Receiver, progress: &Progress) -> anyhow::Result<()> {
    let mut done = progress.done.subscribe();
    loop {
        if *done.borrow() {
            return Ok(());
        }
        let delivery = tokio::select! {
            d = tokio::time::timeout(STALL, receiver.recv::<Body<Value>>()) => d,
            _ = done.changed() => return Ok(()),
        };
        let delivery = delivery
            .map_err(|_| anyhow::anyhow!("no event in {STALL:?}: {}", progress.shortfall()))??;
        receiver.accept(&delivery).await?;
        if progress.add(1) {
            return Ok(());
        }
    }
}

/// Reads `expected` events through the NDJSON stream, an HTTPS connection a partition
/// (connected before the clock starts); returns events per second.
pub async fn read_rest(endpoint: &Endpoint, expected: usize) -> anyhow::Result<f64> {
    let mut conns = Vec::new();
    for _ in 0..endpoint.partitions {
        let tls = tls_connect(endpoint.config.clone(), endpoint.port).await?;
        let (send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls)).await?;
        conns.push((send, tokio::spawn(conn)));
    }
    let progress = Progress::new(expected);
    let started = Instant::now();
    let mut tasks = Vec::new();
    for (p, (mut send, conn)) in conns.into_iter().enumerate() {
        let (progress, token) = (progress.clone(), endpoint.token.clone());
        tasks.push(tokio::spawn(async move {
            let path = format!(
                "/events/consumergroups/$Default/stream?from=start&partition={p}&timeout=30"
            );
            let request = Request::get(path.as_str())
                .header(header::HOST, HOST)
                .header(header::AUTHORIZATION, token)
                .body(Empty::<Bytes>::new())?;
            send.ready().await?;
            let response = send.send_request(request).await?;
            if response.status() != 200 {
                bail!("GET {path} answered {}", response.status());
            }
            let mut body = response.into_body();
            let mut done = progress.done.subscribe();
            while !*done.borrow() {
                let frame = tokio::select! {
                    f = tokio::time::timeout(STALL, body.frame()) => f,
                    _ = done.changed() => break,
                };
                let frame = frame
                    .map_err(|_| {
                        anyhow::anyhow!("no event in {STALL:?}: {}", progress.shortfall())
                    })?
                    .with_context(|| format!("GET {path} ended: {}", progress.shortfall()))??;
                if let Ok(data) = frame.into_data() {
                    let lines = data.iter().filter(|b| **b == b'\n').count();
                    if progress.add(lines) {
                        break;
                    }
                }
            }
            drop(send);
            conn.abort();
            anyhow::Ok(())
        }));
    }
    for t in tasks {
        t.await??;
    }
    #[allow(clippy::cast_precision_loss)]
    Ok(expected as f64 / started.elapsed().as_secs_f64())
}
