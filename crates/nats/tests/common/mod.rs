//! A `nats-server` with JetStream for a test, on an address in the test network
//! (`IRONHUB_TEST_NET`, 127.0.16 by default), its data in a temporary directory.

#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::mpsc;
use std::time::Duration;

use ironhub_nats::{NatsOptions, connect};

/// A running nats-server, killed when dropped.
pub struct Server {
    child: Child,
    pub address: String,
    pub port: u16,
    pub dir: tempfile::TempDir,
    extra: Vec<String>,
}

static NEXT_HOST: AtomicU8 = AtomicU8::new(40);

fn host() -> String {
    let net = std::env::var("IRONHUB_TEST_NET").unwrap_or_else(|_| "127.0.16".into());
    format!("{net}.{}", NEXT_HOST.fetch_add(1, Ordering::Relaxed))
}

/// Starts a server, or returns `None` (saying why) when nats-server is not installed and
/// `CI` is not set; under CI a missing server fails the test.
pub fn server() -> Option<Server> {
    server_with(&[])
}

/// [`server`] with more `nats-server` arguments (`--user`, `--pass`, …).
pub fn server_with(extra: &[&str]) -> Option<Server> {
    if Command::new("nats-server")
        .arg("--version")
        .output()
        .is_err()
    {
        assert!(
            std::env::var_os("CI").is_none(),
            "nats-server is not installed (scripts/test installs it)"
        );
        eprintln!("skipped: nats-server is not installed");
        return None;
    }
    let address = host();
    let port = std::net::TcpListener::bind((address.as_str(), 0))
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    let dir = tempfile::tempdir().expect("a temporary directory");
    let extra: Vec<String> = extra.iter().map(|a| (*a).to_owned()).collect();
    let mut server = Server {
        child: start(&address, port, dir.path(), &extra),
        address,
        port,
        dir,
        extra,
    };
    server.wait_ready();
    Some(server)
}

/// Storage limits that do not depend on the free disk (see `start`).
const JETSTREAM_LIMITS: &str = "jetstream {\n  max_file_store: 64G\n  max_memory_store: 1G\n}\n";

fn start(address: &str, port: u16, dir: &std::path::Path, extra: &[String]) -> Child {
    // JetStream reserves each stream's max_bytes against a limit that defaults to 75% of the
    // free disk: fixed limits keep a nearly full disk from refusing the tests' streams.
    let limits = dir.join("limits.conf");
    std::fs::write(&limits, JETSTREAM_LIMITS).expect("write the JetStream limits");
    Command::new("nats-server")
        .args(["-js", "-a", address, "-p", &port.to_string(), "-c"])
        .arg(&limits)
        .arg("-sd")
        .arg(dir)
        .args(extra)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("nats-server starts")
}

impl Server {
    pub fn url(&self) -> String {
        format!("nats://{}:{}", self.address, self.port)
    }

    pub async fn client(&self) -> async_nats::Client {
        connect(&NatsOptions {
            url: self.url(),
            ..Default::default()
        })
        .await
        .expect("connects to nats-server")
    }

    /// Waits (bounded) until the server logs that it is ready.
    fn wait_ready(&mut self) {
        let stderr = self.child.stderr.take().expect("piped stderr");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut ready = Some(tx);
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if line.contains("Server is ready")
                    && let Some(tx) = ready.take()
                {
                    let _ = tx.send(());
                }
            }
        });
        rx.recv_timeout(Duration::from_secs(20))
            .expect("nats-server is ready within 20 s");
    }

    /// Kills the server (SIGKILL) and waits until it is gone.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Starts the server again on the same address, port and data.
    pub fn restart(&mut self) {
        self.child = start(&self.address, self.port, self.dir.path(), &self.extra);
        self.wait_ready();
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A name no other test uses, for hubs and streams.
pub fn unique(prefix: &str) -> String {
    static N: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    format!(
        "{prefix}{}x{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}
