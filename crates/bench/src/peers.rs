//! The peer brokers, started as their own processes on a loopback port with the TLS
//! certificate ironhub generated: Eclipse Mosquitto (Debian's package) and rumqttd (the Rust
//! broker, `cargo install rumqttd`). Both accept anonymous clients and acknowledge from memory.

use std::path::{Path, PathBuf};
use std::process::{Child, Command};

use anyhow::Context as _;

/// Starts Mosquitto on loopback (`net::address`, 127.0.0.1 by default) `port` over TLS 1.2 with the certificate in `tls`, its
/// configuration written in `work`.
pub fn start_mosquitto(bin: &str, work: &Path, tls: &Path, port: u16) -> anyhow::Result<Child> {
    let conf = work.join("mosquitto.conf");
    std::fs::write(
        &conf,
        format!(
            // `user root`: run as root, Mosquitto would otherwise drop to its own user, which
            // cannot read the private key (mode 0600) it is given.
            "user root\nlistener {port} {}\nallow_anonymous true\npersistence false\n\
             max_inflight_messages 0\nmax_queued_messages 0\n\
             cafile {}\ncertfile {}\nkeyfile {}\ntls_version tlsv1.2\n",
            crate::net::address(),
            tls.join("ca.pem").display(),
            tls.join("server.pem").display(),
            tls.join("server-key.pem").display()
        ),
    )?;
    spawn(Command::new(bin).arg("-c").arg(&conf), bin, work)
}

/// Starts rumqttd with one MQTT 3.1.1 listener on `127.0.0.1:port` over TLS (rustls) with
/// the certificate in `tls`, its configuration written in `work`. Its defaults are lifted
/// where they would cap the load rather than measure the broker: `next_connection_delay_ms`
/// (a pause after every accepted connection, 1 ms in its example) is 0 and it takes 100,000
/// connections.
pub fn start_rumqttd(bin: &str, work: &Path, tls: &Path, port: u16) -> anyhow::Result<Child> {
    let conf = work.join("rumqttd.toml");
    std::fs::write(
        &conf,
        format!(
            "id = 0\n\n[router]\nid = 0\nmax_connections = 100010\n\
             max_outgoing_packet_count = 200\nmax_segment_size = 104857600\n\
             max_segment_count = 10\n\n\
             [v4.1]\nname = \"v4-1\"\nlisten = \"127.0.0.1:{port}\"\nnext_connection_delay_ms = 0\n\
             [v4.1.tls]\ncertpath = \"{}\"\nkeypath = \"{}\"\n\
             [v4.1.connections]\nconnection_timeout_ms = 60000\nmax_payload_size = 262144\n\
             max_inflight_count = 500\ndynamic_filters = true\n",
            tls.join("server.pem").display(),
            tls.join("server-key.pem").display()
        ),
    )?;
    spawn(Command::new(bin).arg("-c").arg(&conf), bin, work)
}

/// Starts `command` with its output appended to [`log_path`] in `work`.
pub fn spawn(command: &mut Command, bin: &str, work: &Path) -> anyhow::Result<Child> {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log_path(work, bin))?;
    command
        .stdout(log.try_clone()?)
        .stderr(log)
        .spawn()
        .with_context(|| format!("cannot start {bin}"))
}

/// Where a server's output goes: `{work}/{binary's file name}.log`.
pub fn log_path(work: &Path, bin: &str) -> PathBuf {
    let name = Path::new(bin)
        .file_name()
        .map_or_else(|| "server".into(), |n| n.to_string_lossy().into_owned());
    work.join(format!("{name}.log"))
}

/// The last lines of a server's output, for an error message.
pub fn log_tail(work: &Path, bin: &str) -> String {
    let text = std::fs::read_to_string(log_path(work, bin)).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(15)..].join("\n")
}
