//! The peer brokers, started as their own processes on a loopback port with the TLS
//! certificate ironhub generated: Eclipse Mosquitto (Debian's package) and rumqttd (the Rust
//! broker, `cargo install rumqttd`). Both accept anonymous clients and acknowledge from memory.

use std::path::Path;
use std::process::{Child, Command, Stdio};

use anyhow::Context as _;

/// Starts Mosquitto on `127.0.0.1:port` over TLS 1.2 with the certificate in `tls`, its
/// configuration written in `work`.
pub fn start_mosquitto(bin: &str, work: &Path, tls: &Path, port: u16) -> anyhow::Result<Child> {
    let conf = work.join("mosquitto.conf");
    std::fs::write(
        &conf,
        format!(
            // `user root`: run as root, Mosquitto would otherwise drop to its own user, which
            // cannot read the private key (mode 0600) it is given.
            "user root\nlistener {port} 127.0.0.1\nallow_anonymous true\npersistence false\n\
             max_inflight_messages 0\nmax_queued_messages 0\n\
             cafile {}\ncertfile {}\nkeyfile {}\ntls_version tlsv1.2\n",
            tls.join("ca.pem").display(),
            tls.join("server.pem").display(),
            tls.join("server-key.pem").display()
        ),
    )?;
    spawn(Command::new(bin).arg("-c").arg(&conf), bin)
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
    spawn(Command::new(bin).arg("-c").arg(&conf), bin)
}

fn spawn(command: &mut Command, bin: &str) -> anyhow::Result<Child> {
    command
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .with_context(|| format!("cannot start {bin}"))
}
