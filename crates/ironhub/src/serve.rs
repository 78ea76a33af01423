//! `ironhub serve`: wiring only. Opens the store, prepares TLS, binds the listeners, serves
//! until SIGINT or SIGTERM.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use ironhub_dps::{Dps, LinkedHub, Services};
use ironhub_embedded::{LocalBus, SqliteEventLog, SqliteEventStreams};
use ironhub_hub::file_upload::FileUpload;
use ironhub_hub::network::NetworkEndpoint;
use ironhub_hub::{Backends, Hub};
use ironhub_store::{DeviceBus, Endpoint, EventLog, EventStreams, Retention, Store};
use tokio::net::{TcpListener, TcpSocket};
use tokio::sync::watch;

use crate::config::{LogFormat, ServeArgs, ServeConfig};
use crate::data_lock::DataDirLock;

/// A running server: its hub and DPS instance, where it listens, and how to stop it.
#[derive(Debug)]
pub struct Server {
    pub hub: Hub,
    pub dps: Dps,
    pub https_addr: SocketAddr,
    pub mqtt_addr: SocketAddr,
    pub amqp_addr: SocketAddr,
    /// The plain AMQP address, when `--amqp-plain-listen` asked for one.
    pub amqp_plain_addr: Option<SocketAddr>,
    /// The plain-HTTP health address, when `--health-listen` asked for one.
    pub health_addr: Option<SocketAddr>,
    /// The plain-HTTP metrics address, when `--metrics-listen` asked for one.
    pub metrics_addr: Option<SocketAddr>,
    /// The CA certificate clients trust.
    pub ca_certificate: std::path::PathBuf,
    stop: watch::Sender<bool>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    /// The plain-HTTP health listener, stopped last: it answers 503 through the drain.
    health: Option<(watch::Sender<bool>, tokio::task::JoinHandle<()>)>,
    /// How long [`Server::shutdown`] waits for connections to drain.
    drain_timeout: Duration,
    /// Held while the server runs: no second server writes to its data directory.
    _lock: DataDirLock,
}

impl Server {
    /// Drains, then stops: readiness turns 503 at once, the listeners stop accepting, device
    /// connections (MQTT, AMQP, WebSocket) close once what they received is acknowledged (the
    /// devices recorded disconnected), open HTTP requests finish; all within the drain
    /// timeout, after which what is left is dropped.
    pub async fn shutdown(self) {
        let drain = self.hub.drain().clone();
        drain.begin();
        tracing::info!(
            device_connections = drain.open_connections(),
            timeout_seconds = self.drain_timeout.as_secs(),
            "draining"
        );
        let _ = self.stop.send(true);
        let mut tasks = self.tasks;
        let drained = tokio::time::timeout(self.drain_timeout, async {
            for task in &mut tasks {
                let _ = task.await;
            }
            drain.idle().await;
        })
        .await;
        if drained.is_err() {
            tracing::warn!(
                device_connections = drain.open_connections(),
                "the drain timed out: closing what is left"
            );
            for task in &tasks {
                task.abort();
            }
        }
        if let Some((stop, task)) = self.health {
            let _ = stop.send(true);
            let _ = task.await;
        }
    }
}

/// `ironhub serve`: starts the server and runs it until SIGINT or SIGTERM.
pub async fn run(args: ServeArgs) -> anyhow::Result<()> {
    let config = args.resolve()?;
    init_logging(config.log_format);
    crate::monitoring::start_diagnostic_logs(
        &config.monitoring,
        &config.hostnames[0],
        &config.node_id,
    )?;
    let signals = listen_for_signals();
    let server = start(&config).await?;
    announce(&config, &server);
    signals.await;
    tracing::info!("shutting down");
    server.shutdown().await;
    Ok(())
}

/// Opens the data directory, prepares TLS, binds both listeners and starts serving.
pub async fn start(config: &ServeConfig) -> anyhow::Result<Server> {
    create_private_dir(&config.data_dir)?;
    let lock = DataDirLock::acquire(&config.data_dir)?;
    let backing = crate::cluster::open(config).await?;
    let store: Arc<dyn Store> = Arc::new(ironhub_store::TimedStore::new(
        backing.store.clone(),
        |port, took| ironhub_observe::metrics().process.store_call(port, took),
    ));
    let (events, bus, streams): (Arc<dyn EventLog>, Arc<dyn DeviceBus>, Arc<dyn EventStreams>) =
        match &config.nats {
            Some(nats) => {
                crate::nats::open_log_and_bus(
                    nats,
                    &config.hostnames,
                    &config.node_id,
                    config.partitions,
                    config.retention,
                )
                .await?
            }
            None => (
                Arc::new(SqliteEventLog::open(&config.data_dir, config.partitions)?),
                Arc::new(LocalBus::with_node(config.node_id.clone())),
                Arc::new(SqliteEventStreams::open(&config.data_dir.join("streams"))?),
            ),
        };
    let backends = Backends {
        store: store.clone(),
        events,
        bus,
    };
    let tls_dir = config.data_dir.join("tls");
    // The device and service endpoint names are in the certificate too.
    let cert_names: Vec<String> = config
        .hostnames
        .iter()
        .chain(&config.network.endpoint_hostnames)
        .cloned()
        .collect();
    if let Some(pg) = &backing.shared {
        crate::cluster::share_tls_identity(pg, config, &tls_dir, &cert_names).await?;
    }
    let generated = ironhub_tls::ensure_certificates(&tls_dir, &cert_names)?;
    let issuing_cas = crate::issuer::load(config, &tls_dir)?;
    tracing::info!(
        names = %issuing_cas.names().collect::<Vec<_>>().join(", "),
        "issuing CAs"
    );
    let mut hub = Hub::open(backends, config.hostnames.clone())
        .await?
        .with_issuing_cas(issuing_cas.clone())
        .with_event_streams(streams)
        .with_routing_allowances(config.routing_allowances)
        .with_frame_limits(config.frame_limits)
        .with_rate_windows(backing.windows.clone());
    // The console offers the generated CA to download; a brought certificate's CA is the
    // user's to hand out.
    if config.tls_cert.is_none() {
        let pem = std::fs::read_to_string(&generated.ca)
            .with_context(|| format!("reading {}", generated.ca.display()))?;
        hub = hub.with_server_ca(pem);
    }
    let throttle = crate::throttling::start(config.throttling.as_ref(), backing.windows);
    if let Some(t) = &throttle {
        hub = hub.with_throttle(t.clone());
    }
    if let Some(routing) = &config.routing {
        hub.set_routing_config(routing.clone(), Some("*"))
            .await
            .map_err(|e| anyhow::anyhow!("the config file's [routing] is not valid: {e}"))?;
        tracing::info!(
            routes = routing.routes.len(),
            "routing applied from the config file"
        );
    }
    config.network.apply_rules(&hub).await?;
    // This node's connections and deliveries from before this start are gone: mark its
    // devices disconnected and give its locked cloud-to-device messages back at once (other
    // nodes sharing the store keep theirs).
    let recovered = hub.recover_node().await?;
    if recovered.disconnected > 0 {
        tracing::info!(
            devices = recovered.disconnected,
            "marked devices connected before the restart as disconnected"
        );
    }
    if recovered.released_locks > 0 {
        tracing::info!(
            messages = recovered.released_locks,
            "released cloud-to-device messages delivered but not acknowledged before the restart"
        );
    }
    if recovered.released_job_devices > 0 {
        tracing::info!(
            devices = recovered.released_job_devices,
            "released job devices this node was running before the restart"
        );
    }

    let (chain, key) = match &config.tls_cert {
        Some((cert, key)) => (cert.clone(), key.clone()),
        None => (generated.server_chain.clone(), generated.server_key.clone()),
    };
    // Both ports accept under one limiter: the caps count the server's connections, not a port's.
    let limiter = ironhub_tls::ConnectionLimiter::new(config.connection_limits);
    // Every port applies the TLS policy, and asks the network rules before the handshake
    // about the endpoints it serves.
    let tls = &config.network.tls;
    let https_accept = ironhub_tls::AcceptLoop::new(
        "https",
        ironhub_tls::server_config_with(&chain, &key, true, tls)?,
        limiter.clone(),
    )
    .with_gate(crate::netpolicy::gate(hub.clone(), &NetworkEndpoint::ALL))
    .private_endpoint(config.network.is_private("https"));
    let mqtt_accept = ironhub_tls::AcceptLoop::new(
        "mqtt",
        ironhub_tls::server_config_with(&chain, &key, false, tls)?,
        limiter.clone(),
    )
    .with_gate(crate::netpolicy::gate(
        hub.clone(),
        crate::mqtt_listener::ENDPOINTS,
    ))
    .private_endpoint(config.network.is_private("mqtt"));
    let amqp_accept = ironhub_tls::AcceptLoop::new(
        "amqp",
        ironhub_tls::server_config_with(&chain, &key, false, tls)?,
        limiter,
    )
    .with_gate(crate::netpolicy::gate(
        hub.clone(),
        ironhub_amqp::AmqpContext::ENDPOINTS,
    ))
    .private_endpoint(config.network.is_private("amqp"));
    // On a stop, device connections close themselves once acknowledged (the hub's drain) and
    // get this long; what is not a device connection yet is dropped.
    let drain = hub.drain().clone();
    let idle = move || {
        let drain = drain.clone();
        async move { drain.idle().await }
    };
    let mqtt_accept = mqtt_accept.with_drain_until(config.drain_timeout, idle.clone());
    let amqp_accept = amqp_accept.with_drain_until(config.drain_timeout, idle);
    let amqp_plain_accept = amqp_accept.without_tls("amqp-plain");

    // The ports are reserved now (so that a taken port fails the start at once) but only
    // listened on once the hub's and the DPS's records are written: a client that can connect
    // (the test suite's readiness check, say) finds `ironhub info` complete.
    let https_socket = reserve(config.https_listen, "HTTPS", "--https-listen")?;
    let mqtt_socket = reserve(config.mqtt_listen, "MQTT", "--mqtt-listen")?;
    let amqp_socket = reserve(config.amqp_listen, "AMQP", "--amqp-listen")?;
    let https_addr = https_socket.local_addr()?;
    let mqtt_addr = mqtt_socket.local_addr()?;
    let amqp_addr = amqp_socket.local_addr()?;
    let amqp_plain_socket = config
        .amqp_plain_listen
        .map(|addr| reserve(addr, "plain AMQP", "--amqp-plain-listen"))
        .transpose()?;
    let amqp_plain_addr = amqp_plain_socket
        .as_ref()
        .map(TcpSocket::local_addr)
        .transpose()?;
    let health_socket = config
        .health_listen
        .map(|addr| reserve(addr, "health checks", "--health-listen"))
        .transpose()?;
    let health_addr = health_socket
        .as_ref()
        .map(TcpSocket::local_addr)
        .transpose()?;
    let metrics_socket = config
        .monitoring
        .metrics_listen
        .map(|addr| reserve(addr, "metrics", "--metrics-listen"))
        .transpose()?;
    let metrics_addr = metrics_socket
        .as_ref()
        .map(TcpSocket::local_addr)
        .transpose()?;

    let endpoint = Endpoint {
        host_name: hub.host_name().to_owned(),
        host_names: config.hostnames.clone(),
        https_port: https_addr.port(),
        mqtt_port: mqtt_addr.port(),
        amqp_port: Some(amqp_addr.port()),
        https_listen: Some(https_addr),
        tls_certificate: config
            .tls_cert
            .as_ref()
            .map(|(cert, _)| std::path::absolute(cert).unwrap_or_else(|_| cert.clone())),
    };
    if backing.shared.is_some() {
        crate::cluster::check_endpoint(store.as_ref(), &endpoint).await?;
    }
    store.set_endpoint(&endpoint).await?;
    // The DPS instance lives in the same server and answers to the same names; at its first
    // start it links the server's own hub. It reaches its own hub in process and any other
    // linked hub over HTTPS, trusting the system's roots, --trust-ca and its own CA.
    let mut trust = config.trust_ca.clone();
    trust.push(generated.ca.clone());
    if let Some(settings) = config.file_upload.clone() {
        hub = hub.with_file_upload(FileUpload {
            settings,
            storage: Arc::new(crate::file_upload::HttpBlobStorage::new(&trust)?),
        });
    }
    let (hub_access, dps_access) = crate::service_auth::service_access(&config.auth, &trust)?;
    hub = hub.with_service_access(hub_access);
    let dps = Dps::open(
        store.clone(),
        config.hostnames.clone(),
        Some(own_linked_hub(&hub, &endpoint)?),
    )
    .await?
    .with_services(Services {
        connector: Arc::new(crate::linked_hubs::ServerConnector::new(
            hub.clone(),
            trust.clone(),
        )),
        webhook: Arc::new(crate::linked_hubs::HttpWebhook::new(&trust)?),
    })
    .with_limits(config.dps_limits.clone())
    .with_node(config.node_id.clone())
    .with_issuing_cas(issuing_cas)
    .with_service_access(dps_access);
    let dps = match throttle {
        Some(t) => dps.with_throttle(t),
        None => dps,
    };

    let https = listen(https_socket, https_addr, "HTTPS", "--https-listen")?;
    let mqtt = listen(mqtt_socket, mqtt_addr, "MQTT", "--mqtt-listen")?;
    let amqp = listen(amqp_socket, amqp_addr, "AMQP", "--amqp-listen")?;
    let amqp_plain = match (amqp_plain_socket, amqp_plain_addr) {
        (Some(socket), Some(addr)) => {
            Some(listen(socket, addr, "plain AMQP", "--amqp-plain-listen")?)
        }
        _ => None,
    };
    let health = match (health_socket, health_addr) {
        (Some(socket), Some(addr)) => {
            let listener = listen(socket, addr, "health checks", "--health-listen")?;
            let (stop, stopped) = watch::channel(false);
            let task = tokio::spawn(ironhub_http::serve_health(listener, hub.clone(), stopped));
            Some((stop, task))
        }
        _ => None,
    };
    let (stop, stopped) = watch::channel(false);
    let metrics = match (metrics_socket, metrics_addr) {
        (Some(socket), Some(addr)) => {
            let listener = listen(socket, addr, "metrics", "--metrics-listen")?;
            let metrics = ironhub_http::serve_metrics(listener, hub.clone(), stopped.clone());
            Some(tokio::spawn(metrics))
        }
        _ => None,
    };
    let mut tasks = vec![
        tokio::spawn(ironhub_http::serve_tls(
            https,
            https_accept,
            ironhub_http::router_with_amqp(
                hub.clone(),
                Some(dps.clone()),
                Some(
                    ironhub_amqp::AmqpContext::new(hub.clone(), amqp_addr.port())
                        .with_dps(dps.clone()),
                ),
            ),
            config.read_timeouts,
            stopped.clone(),
        )),
        tokio::spawn(crate::mqtt_listener::serve(
            mqtt,
            mqtt_accept,
            hub.clone(),
            Some(dps.clone()),
            stopped.clone(),
        )),
        tokio::spawn(crate::amqp_listener::serve(
            amqp,
            amqp_accept,
            ironhub_amqp::AmqpContext::new(hub.clone(), amqp_addr.port()).with_dps(dps.clone()),
            stopped.clone(),
        )),
        tokio::spawn(measure_latencies(dps.clone(), stopped.clone())),
        // Routing's external endpoints (files, webhooks, NATS subjects).
        tokio::spawn(crate::endpoint_pumps::run(
            hub.clone(),
            config.data_dir.join("endpoints"),
            Arc::new(ironhub_store::SystemClock),
            ironhub_endpoints::ENDPOINT_LEASE,
            stopped.clone(),
        )),
        tokio::spawn(enforce_retention(
            hub.events().clone(),
            hub.event_streams().cloned(),
            config.retention,
            stopped.clone(),
        )),
        // Expired cloud-to-device messages leave their queues (with feedback) even when their
        // device never comes back.
        tokio::spawn(
            hub.clone()
                .expire_c2d_until(Duration::from_secs(10), stopped.clone()),
        ),
        // Configurations and IoT Edge deployments reach the twins they target.
        tokio::spawn(hub.clone().run_configurations(
            ironhub_hub::configurations::apply::PASS_INTERVAL,
            stopped.clone(),
        )),
        // Scheduled jobs run when due, on whichever nodes see them first.
        tokio::spawn(
            hub.clone()
                .run_jobs(ironhub_hub::jobs::runner::PASS_INTERVAL, stopped.clone()),
        ),
        // Rules changed through another node reach this node's open connections.
        tokio::spawn(hub.clone().watch_network_rules_until(stopped.clone())),
        // This node's heartbeat, and the release of what nodes that stopped answering held.
        tokio::spawn(hub.clone().keep_node_alive_until(stopped.clone())),
    ];
    let stopped_plain = stopped;
    tasks.extend(metrics);
    // The same AMQP endpoint without TLS, for Event Hubs clients' development emulator mode.
    tasks.extend(amqp_plain.map(|listener| {
        tokio::spawn(crate::amqp_listener::serve(
            listener,
            amqp_plain_accept,
            ironhub_amqp::AmqpContext::new(hub.clone(), amqp_addr.port()).with_dps(dps.clone()),
            stopped_plain,
        ))
    }));
    Ok(Server {
        hub,
        dps,
        https_addr,
        mqtt_addr,
        amqp_addr,
        amqp_plain_addr,
        health_addr,
        metrics_addr,
        ca_certificate: std::path::absolute(&generated.ca).unwrap_or(generated.ca),
        stop,
        tasks,
        health,
        drain_timeout: config.drain_timeout,
        _lock: lock,
    })
}

/// The server's own hub as a DPS linked hub: its host name, reached with `iothubowner`.
fn own_linked_hub(hub: &Hub, endpoint: &Endpoint) -> anyhow::Result<LinkedHub> {
    let owner = hub
        .settings()
        .policy("iothubowner")
        .context("the hub has no iothubowner policy")?;
    let connection_string = ironhub_auth::ConnectionString {
        host_name: endpoint.connection_host(),
        shared_access_key_name: Some(owner.key_name.clone()),
        shared_access_key: Some(owner.primary_key.clone()),
        ..ironhub_auth::ConnectionString::default()
    };
    Ok(LinkedHub {
        name: hub.host_name().to_owned(),
        connection_string: connection_string.to_string(),
        allocation_weight: None,
        apply_allocation_policy: None,
        location: None,
        etag: None,
    })
}

/// How often the round trips to the linked hubs are measured (lowest-latency allocation).
const LATENCY_INTERVAL: Duration = Duration::from_secs(60);

/// Measures the round trip from the DPS to each linked hub: soon after start, then every
/// minute, until `shutdown`.
async fn measure_latencies(dps: Dps, mut shutdown: watch::Receiver<bool>) {
    let mut tick = tokio::time::interval(LATENCY_INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = shutdown.changed() => return,
        }
        match dps.measure_latencies().await {
            Ok(measured) => tracing::debug!(?measured, "linked hub round trips"),
            Err(e) => tracing::warn!(error = %e, "could not measure the linked hubs' latency"),
        }
    }
}

/// How often the event log's retention is enforced.
const RETENTION_INTERVAL: Duration = Duration::from_secs(60);

/// Drops what the event log and the named event streams (routing endpoints) no longer keep:
/// at start, then every minute, until `shutdown`.
async fn enforce_retention(
    events: Arc<dyn EventLog>,
    streams: Option<Arc<dyn EventStreams>>,
    retention: Retention,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut tick = tokio::time::interval(RETENTION_INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = shutdown.changed() => return,
        }
        match events.enforce_retention(retention).await {
            Ok(0) => {}
            Ok(dropped) => tracing::info!(dropped, "event log retention dropped old telemetry"),
            Err(e) => tracing::warn!(error = %e, "event log retention failed"),
        }
        let Some(streams) = &streams else {
            continue;
        };
        for name in streams.list_streams().await.unwrap_or_default() {
            let Ok(Some(stream)) = streams.stream(&name).await else {
                continue;
            };
            match stream.enforce_retention(retention).await {
                Ok(0) => {}
                Ok(dropped) => {
                    tracing::info!(stream = %name, dropped, "stream retention dropped old messages")
                }
                Err(e) => tracing::warn!(stream = %name, error = %e, "stream retention failed"),
            }
        }
    }
}

/// The log filter without `IRONHUB_LOG`. rustls warns about every client that sends an IP
/// address as its TLS server name (OpenSSL-based clients such as mosquitto do, when dialled
/// by IP); that is normal for a hub whose `--hostname` is an IP, so its handshake parser
/// logs errors only.
const DEFAULT_LOG_FILTER: &str = "info,rustls::msgs::handshake=error";

fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("IRONHUB_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(DEFAULT_LOG_FILTER));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

/// Creates the data directory readable only by its owner: it holds every key of the hub.
fn create_private_dir(dir: &Path) -> anyhow::Result<()> {
    if !dir.exists() {
        std::fs::create_dir_all(dir)
            .with_context(|| format!("cannot create the data directory {}", dir.display()))?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))?;
        }
    }
    Ok(())
}

/// The lowest port an unprivileged process may bind on Linux by default.
const PRIVILEGED_PORTS: u16 = 1024;

/// The one-line error for an address the server cannot listen on, naming the flag to use.
fn bind_error(addr: SocketAddr, what: &str, flag: &str, e: &std::io::Error) -> anyhow::Error {
    let hint = if e.kind() == std::io::ErrorKind::PermissionDenied {
        format!(
            " (ports below {PRIVILEGED_PORTS} need root or CAP_NET_BIND_SERVICE). The Azure device SDKs \
             connect only to 443 and 8883: let this binary bind them with `sudo setcap \
             cap_net_bind_service=+ep {}`, or redirect the ports (see docs/operators.md); clients \
             that take a port (mosquitto, the CLI, the service SDKs) can use another address, \
             e.g. {flag} 127.0.0.1:{}",
            std::env::current_exe()
                .map(|p| p.display().to_string())
                .unwrap_or_else(|_| "ironhub".to_owned()),
            if flag == "--https-listen" {
                8443
            } else {
                18883
            }
        )
    } else {
        format!("; choose another address with {flag}")
    };
    anyhow::anyhow!("cannot listen on {addr} for {what}: {e}{hint}")
}

/// Binds a socket to `addr` (as `TcpListener::bind` does, with `SO_REUSEADDR`), without
/// listening yet.
fn reserve(addr: SocketAddr, what: &str, flag: &str) -> anyhow::Result<TcpSocket> {
    let socket = if addr.is_ipv4() {
        TcpSocket::new_v4()
    } else {
        TcpSocket::new_v6()
    }
    .map_err(|e| bind_error(addr, what, flag, &e))?;
    #[cfg(unix)]
    socket
        .set_reuseaddr(true)
        .map_err(|e| bind_error(addr, what, flag, &e))?;
    socket
        .bind(addr)
        .map_err(|e| bind_error(addr, what, flag, &e))?;
    Ok(socket)
}

/// Starts listening on a reserved socket.
fn listen(
    socket: TcpSocket,
    addr: SocketAddr,
    what: &str,
    flag: &str,
) -> anyhow::Result<TcpListener> {
    socket
        .listen(1024)
        .map_err(|e| bind_error(addr, what, flag, &e))
}

#[allow(clippy::print_stdout)]
fn announce(config: &ServeConfig, server: &Server) {
    println!(
        "ironhub is serving the IoT Hub '{}'",
        server.hub.host_name()
    );
    println!("  HTTPS (REST, MQTT over WebSocket): {}", server.https_addr);
    println!("  MQTT over TLS:                     {}", server.mqtt_addr);
    println!("  AMQP over TLS (Event Hubs, C2D):   {}", server.amqp_addr);
    if let Some(addr) = server.amqp_plain_addr {
        println!("  plain AMQP (development only):     {addr}");
    }
    if let Some(addr) = server.health_addr {
        println!("  health checks (plain HTTP):        {addr}");
    }
    if let Some(addr) = server.metrics_addr {
        println!("  metrics (plain HTTP, /metrics):    {addr}");
    }
    match &config.tls_cert {
        // The generated ca.pem did not sign a certificate the user brought.
        Some((cert, _)) => println!(
            "  TLS certificate (--tls-cert):      {} (clients trust the CA that issued it)",
            cert.display()
        ),
        None => println!(
            "  CA certificate to trust:           {}",
            server.ca_certificate.display()
        ),
    }
    // A cluster's hub is read from its store (the URL may hold a password: not printed).
    let store = if config.store.is_some() {
        " --store \"$IRONHUB_STORE\""
    } else {
        ""
    };
    println!(
        "  connection string:                 {} info{store} --data-dir {}",
        command_name(),
        config.data_dir.display()
    );
    println!("  stop with Ctrl-C (or SIGTERM); one server per data directory");
}

/// How to run this binary from a shell: `ironhub` when that is what `PATH` finds, else its
/// full path (e.g. `target/release/ironhub` under `cargo run`).
fn command_name() -> String {
    let Ok(exe) = std::env::current_exe() else {
        return "ironhub".to_owned();
    };
    // The first `ironhub` on PATH is the one a shell runs.
    let first_on_path = std::env::var_os("PATH").and_then(|path| {
        std::env::split_paths(&path).find_map(|dir| std::fs::canonicalize(dir.join("ironhub")).ok())
    });
    let on_path =
        first_on_path.is_some_and(|found| std::fs::canonicalize(&exe).is_ok_and(|me| me == found));
    if on_path {
        "ironhub".to_owned()
    } else {
        exe.display().to_string()
    }
}

/// Installs the SIGINT and SIGTERM handlers now and returns what waits for either: installed
/// before the server starts (and announces its ports), a signal sent as soon as the ports are
/// known stops the server cleanly instead of killing the process by the default action.
fn listen_for_signals() -> impl Future<Output = ()> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{Signal, SignalKind, signal};
        async fn next(signal: Option<Signal>) {
            match signal {
                Some(mut s) => {
                    s.recv().await;
                }
                None => std::future::pending().await,
            }
        }
        let term = signal(SignalKind::terminate()).ok();
        let interrupt = signal(SignalKind::interrupt()).ok();
        async move {
            tokio::select! {
                _ = next(term) => {},
                _ = next(interrupt) => {},
            }
        }
    }
    #[cfg(not(unix))]
    async {
        let _ = tokio::signal::ctrl_c().await;
    }
}
