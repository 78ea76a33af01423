//! `ironhub serve` as a process: the one-line error when a port is taken, a clean exit on
//! SIGTERM, and a certificate of one's own (`--tls-cert`/`--tls-key`).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use ironhub::identity::Identity;
use ironhub_client::{ClientError, HubClient};
use ironhub_embedded::SqliteStore;
use ironhub_store::prelude::*;

fn serve(dir: &Path, extra: &[&str]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_ironhub"));
    cmd.arg("serve")
        .arg("--data-dir")
        .arg(dir)
        .args(extra)
        .env_remove("IRONHUB_LOG")
        .stdin(Stdio::null());
    cmd
}

/// Waits until the server has recorded where it listens (it does so once both are bound).
/// The server's recorded endpoint, once both of its ports accept connections (it records
/// where it listens, and the hub's and the DPS's identity, before it listens).
async fn wait_listening(dir: &Path, child: &mut Child) -> ironhub_store::Endpoint {
    for _ in 0..400 {
        assert!(
            child.try_wait().unwrap().is_none(),
            "the server exited early"
        );
        if let Ok(store) = SqliteStore::open_existing(dir)
            && let Ok(Some(e)) = store.endpoint().await
            && tokio::net::TcpStream::connect(("127.0.0.1", e.https_port))
                .await
                .is_ok()
            && tokio::net::TcpStream::connect(("127.0.0.1", e.mqtt_port))
                .await
                .is_ok()
        {
            return e;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("the server did not start");
}

/// A server process that is killed if the test panics before it is terminated, so that a
/// failing test leaves no server behind.
struct Running(Option<Child>);

impl Running {
    fn child(&mut self) -> &mut Child {
        self.0.as_mut().expect("the server was terminated")
    }

    fn take(mut self) -> Child {
        self.0.take().expect("the server was terminated")
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Some(mut child) = self.0.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// SIGTERM, then the exit status and output (SIGKILL after `within`).
fn terminate(child: Child, within: Duration) -> (Output, Duration) {
    let pid = child.id().to_string();
    let sent = Instant::now();
    let status = Command::new("kill").args(["-TERM", &pid]).status().unwrap();
    assert!(status.success(), "kill -TERM {pid} failed");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    match rx.recv_timeout(within) {
        Ok(out) => (out.unwrap(), sent.elapsed()),
        Err(_) => {
            let _ = Command::new("kill").args(["-KILL", &pid]).status();
            panic!("the server did not exit within {within:?} of SIGTERM");
        }
    }
}

fn lines_with<'a>(text: &'a str, needle: &str) -> Vec<&'a str> {
    text.lines().filter(|l| l.contains(needle)).collect()
}

/// A port that is taken: `serve` exits at once with one line that names the flag to change.
#[test]
fn a_taken_port_is_one_line_naming_the_flag() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    for (flag, other) in [
        ("--https-listen", "--mqtt-listen"),
        ("--mqtt-listen", "--https-listen"),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let addr = format!("127.0.0.1:{port}");
        let out = serve(dir.path(), &[flag, &addr, other, "127.0.0.1:0"])
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(1), "{flag}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        let errors = lines_with(&stderr, "error:");
        assert_eq!(errors.len(), 1, "one error line, got:\n{stderr}");
        let line = errors[0];
        assert!(
            line.starts_with("error: cannot listen on 127.0.0.1:"),
            "{line}"
        );
        assert!(line.contains(&addr), "{line}");
        assert!(
            line.contains(&format!("choose another address with {flag}")),
            "{line}"
        );
        assert!(
            out.stdout.is_empty(),
            "no banner for a server that did not start"
        );
    }
    drop(taken);
}

/// SIGTERM (what `docker stop` and systemd send): the server stops accepting, ends its
/// connections and exits 0, well within the drain bound.
#[tokio::test]
async fn sigterm_exits_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = Running(Some(
        serve(
            dir.path(),
            &[
                "--https-listen",
                "127.0.0.1:0",
                "--mqtt-listen",
                "127.0.0.1:0",
            ],
        )
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap(),
    ));
    let endpoint = wait_listening(dir.path(), child.child()).await;
    // An idle connection on each port does not hold the exit up.
    let _https = tokio::net::TcpStream::connect(("127.0.0.1", endpoint.https_port))
        .await
        .unwrap();
    let _mqtt = tokio::net::TcpStream::connect(("127.0.0.1", endpoint.mqtt_port))
        .await
        .unwrap();
    let (out, took) = terminate(child.take(), Duration::from_secs(15));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "exit {:?}:\n{stderr}", out.status);
    assert!(took < Duration::from_secs(8), "took {took:?}");
    assert!(stderr.contains("shutting down"), "{stderr}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("CA certificate to trust:"), "{stdout}");
}

/// A certificate of one's own: both listeners serve it, and neither the banner nor `ironhub
/// info` claims that the generated `ca.pem` signed it.
#[tokio::test]
async fn own_certificate_is_served_and_named_as_such() {
    const NAME: &str = "own.invalid";
    let files = tempfile::tempdir().unwrap();
    let (ca_pem, chain_pem, key_pem) = own_certificate(NAME);
    let ca = files.path().join("my-ca.pem");
    let cert = files.path().join("cert.pem");
    let key = files.path().join("key.pem");
    std::fs::write(&ca, ca_pem).unwrap();
    std::fs::write(&cert, chain_pem).unwrap();
    std::fs::write(&key, key_pem).unwrap();

    let dir = tempfile::tempdir().unwrap();
    let mut child = Running(Some(
        serve(
            dir.path(),
            &[
                "--hostname",
                NAME,
                "--https-listen",
                "127.0.0.1:0",
                "--mqtt-listen",
                "127.0.0.1:0",
            ],
        )
        .arg("--tls-cert")
        .arg(&cert)
        .arg("--tls-key")
        .arg(&key)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap(),
    ));
    let endpoint = wait_listening(dir.path(), child.child()).await;
    let https = format!("127.0.0.1:{}", endpoint.https_port)
        .parse()
        .unwrap();
    let owner = Identity::load(dir.path())
        .await
        .unwrap()
        .connection_string("iothubowner", false)
        .unwrap();

    // HTTPS: trusting only my CA works (for the hub's name); trusting only ca.pem does not.
    let mine = HubClient::connecting_to(owner.clone(), std::slice::from_ref(&ca), https).unwrap();
    mine.list_devices(None).await.unwrap();
    let generated = dir.path().join("tls/ca.pem");
    let theirs = HubClient::connecting_to(owner, &[generated], https).unwrap();
    let e = theirs.list_devices(None).await.unwrap_err();
    assert!(
        matches!(e, ClientError::CertificateNotTrusted { .. }),
        "{e}"
    );

    // MQTT over TLS presents the same certificate.
    let mut roots = rustls::RootCertStore::empty();
    for c in ironhub_tls::read_certs(&ca).unwrap() {
        roots.add(c).unwrap();
    }
    let config = rustls::ClientConfig::builder_with_provider(ironhub_tls::provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", endpoint.mqtt_port))
        .await
        .unwrap();
    tokio_rustls::TlsConnector::from(std::sync::Arc::new(config))
        .connect(rustls::pki_types::ServerName::try_from(NAME).unwrap(), tcp)
        .await
        .expect("the MQTT listener serves the --tls-cert certificate");

    // `ironhub info`: no CA claimed, the certificate named.
    let info = Command::new(env!("CARGO_BIN_EXE_ironhub"))
        .args(["info", "--json", "--data-dir"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(info.status.success());
    let info: serde_json::Value = serde_json::from_slice(&info.stdout).unwrap();
    assert_eq!(
        info["tls"]["caCertificate"],
        serde_json::Value::Null,
        "{info}"
    );
    assert_eq!(
        info["tls"]["serverCertificate"],
        std::path::absolute(&cert).unwrap().to_str().unwrap(),
        "{info}"
    );
    let plain = Command::new(env!("CARGO_BIN_EXE_ironhub"))
        .args(["info", "--data-dir"])
        .arg(dir.path())
        .output()
        .unwrap();
    let plain = String::from_utf8_lossy(&plain.stdout);
    assert!(!plain.contains("CA certificate"), "{plain}");
    assert!(
        plain.contains("TLS certificate:") && plain.contains("cert.pem"),
        "{plain}"
    );

    let (out, _) = terminate(child.take(), Duration::from_secs(15));
    assert!(out.status.success());
    let banner = String::from_utf8_lossy(&out.stdout);
    assert!(!banner.contains("CA certificate to trust"), "{banner}");
    assert_eq!(
        lines_with(&banner, "TLS certificate (--tls-cert):").len(),
        1,
        "{banner}"
    );
}

/// My CA, and a server certificate chain (leaf, then CA) for `name` and 127.0.0.1 with its key.
fn own_certificate(name: &str) -> (String, String, String) {
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "My Own Test CA");
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let ca_cert = ca_params.self_signed(&ca_key).unwrap();
    let issuer = rcgen::Issuer::new(ca_params, ca_key);
    let key = rcgen::KeyPair::generate().unwrap();
    let mut params = rcgen::CertificateParams::new(vec![name.to_owned()]).unwrap();
    params
        .subject_alt_names
        .push(rcgen::SanType::IpAddress("127.0.0.1".parse().unwrap()));
    let leaf = params.signed_by(&key, &issuer).unwrap();
    (
        ca_cert.pem(),
        format!("{}{}", leaf.pem(), ca_cert.pem()),
        key.serialize_pem(),
    )
}

/// One server per data directory: a second `serve` on a directory in use exits at once with
/// one line naming the first one's pid, and changes nothing; `ironhub info` keeps working;
/// after a `kill -9` of the first, the lock it held is gone and a new server starts.
#[tokio::test]
async fn a_data_directory_in_use_refuses_a_second_server() {
    let dir = tempfile::tempdir().unwrap();
    let loopback = [
        "--https-listen",
        "127.0.0.1:0",
        "--mqtt-listen",
        "127.0.0.1:0",
    ];
    let mut first = Running(Some(
        serve(dir.path(), &loopback)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    ));
    let endpoint = wait_listening(dir.path(), first.child()).await;
    let pid = first.child().id();

    let out = serve(dir.path(), &loopback).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    let errors = lines_with(&stderr, "error:");
    assert_eq!(errors.len(), 1, "one error line, got:\n{stderr}");
    assert!(errors[0].contains(&format!("pid {pid}")), "{}", errors[0]);
    assert!(errors[0].contains("--data-dir"), "{}", errors[0]);
    assert!(
        out.stdout.is_empty(),
        "no banner for a server that did not start"
    );
    // The first server's record of where it listens is untouched.
    let store = SqliteStore::open_existing(dir.path()).unwrap();
    assert_eq!(store.endpoint().await.unwrap(), Some(endpoint));

    let info = Command::new(env!("CARGO_BIN_EXE_ironhub"))
        .arg("info")
        .arg("--data-dir")
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(
        info.status.success(),
        "{}",
        String::from_utf8_lossy(&info.stderr)
    );

    let mut killed = first.take();
    killed.kill().unwrap(); // SIGKILL: no chance to clean up
    killed.wait().unwrap();
    let mut second = Running(Some(
        serve(dir.path(), &loopback)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    ));
    wait_listening(dir.path(), second.child()).await;
    let holder = std::fs::read_to_string(dir.path().join("ironhub.lock")).unwrap();
    assert!(
        holder.starts_with(&format!("pid {},", second.child().id())),
        "{holder}"
    );
}
