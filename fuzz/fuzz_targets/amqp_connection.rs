//! One AMQP connection fed a client's bytes (`ironhub_amqp::serve` on an in-memory stream,
//! no TLS): the protocol header, SASL, performatives and messages as fe2o3-amqp decodes them
//! and the adapter interprets them (CBS, addresses, filters, requests, TPM framing). Whatever
//! the bytes, the connection never panics and ends soon after its client has gone: a client
//! that sends its bytes and closes leaves no connection waiting.
#![no_main]

use std::net::SocketAddr;
use std::sync::OnceLock;
use std::time::Duration;

use ironhub_amqp::AmqpContext;
use libfuzzer_sys::fuzz_target;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// How long a connection may outlive its client's end before the target calls it stuck.
const END_WITHIN: Duration = Duration::from_secs(10);

struct Fixture {
    runtime: tokio::runtime::Runtime,
    context: AmqpContext,
    _data: tempfile::TempDir,
}

fn fixture() -> &'static Fixture {
    static FIXTURE: OnceLock<Fixture> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        // Multi-threaded, as the server's: the TPM login waits on the domain in place.
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("a runtime");
        let data = tempfile::tempdir().expect("a temporary directory");
        let context = runtime.block_on(ironhub_fuzz::endpoint(data.path()));
        Fixture {
            runtime,
            context,
            _data: data,
        }
    })
}

fuzz_target!(|data: &[u8]| {
    let fixture = fixture();
    fixture.runtime.block_on(async {
        let (mut client, server) = tokio::io::duplex(1 << 16);
        let peer = SocketAddr::from(([127, 0, 0, 1], 40000));
        let serve = ironhub_amqp::serve(server, peer, Vec::new(), fixture.context.clone());
        let talk = async {
            // The server may stop reading at any point (a refusal closes the connection).
            let _ = client.write_all(data).await;
            let _ = client.shutdown().await;
            let mut answer = Vec::new();
            let _ = client.read_to_end(&mut answer).await;
        };
        tokio::time::timeout(END_WITHIN, async { tokio::join!(serve, talk) })
            .await
            .expect("the connection ends once its client is gone");
    });
});
