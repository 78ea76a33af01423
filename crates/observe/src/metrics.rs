//! The node's metrics, exposed in Prometheus text (OpenMetrics) at `/metrics`.
//!
//! Naming: an Azure metric keeps its name with each `.` made `_` and a prefix saying whose it
//! is (`iothub_` for IoT Hub's, `dps_` for the Device Provisioning Service's); the HELP text
//! quotes the Azure name and display name. Counters get Prometheus's `_total` suffix, so
//! Azure's `d2c.telemetry.ingress.success` is `iothub_d2c_telemetry_ingress_success_total`
//! and DPS's `RegistrationAttempts` is `dps_RegistrationAttempts_total`. DPS's dimensions are
//! labels named as Azure names them (`ProvisioningServiceName`, `IoTHubName`, `Status`,
//! `Protocol`). Figures Azure has no name for are `ironhub_*`.
//!
//! Counters are this process's: Prometheus scrapes each node and sums. Gauges read from the
//! store at scrape time (`connectedDeviceCount`, `devices.totalDevices`, event log lag) are the
//! hub's, the same on every node: aggregate them with `max`, not `sum`.

use std::sync::LazyLock;
use std::time::Duration;

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

/// A label set: label names and values, in order.
type Labels<const N: usize> = [(&'static str, String); N];

/// Every metric of this process, registered once.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    /// The Device Provisioning Service's metrics.
    pub dps: DpsMetrics,
    /// IoT Hub's metrics.
    pub hub: HubMetrics,
    /// Figures of this process Azure has no name for.
    pub process: ProcessMetrics,
}

/// DPS's metrics, with the dimensions its monitoring reference lists.
#[derive(Debug, Default)]
pub struct DpsMetrics {
    attestation_attempts: Family<Labels<3>, Counter>,
    device_assignments: Family<Labels<2>, Counter>,
    registration_attempts: Family<Labels<3>, Counter>,
}

/// IoT Hub's metrics under their Azure names (see the module's naming rule).
#[derive(Debug, Default)]
pub struct HubMetrics {
    /// `d2c.telemetry.ingress.allProtocol`: telemetry messages devices tried to send.
    pub telemetry_ingress_all: Counter,
    /// `d2c.telemetry.ingress.success`: telemetry messages the hub accepted.
    pub telemetry_ingress_success: Counter,
    /// `d2c.telemetry.ingress.sendThrottle`: telemetry messages refused by throttling.
    pub telemetry_ingress_send_throttle: Counter,
    /// `c2d.commands.egress.complete.success`.
    pub c2d_complete: Counter,
    /// `c2d.commands.egress.abandon.success`.
    pub c2d_abandon: Counter,
    /// `c2d.commands.egress.reject.success`.
    pub c2d_reject: Counter,
    /// `C2DMessagesExpired`.
    pub c2d_expired: Counter,
    /// `c2d.twin.read.success` / `.failure`: twin reads by services.
    pub service_twin_read: Outcomes,
    /// `c2d.twin.update.success` / `.failure`: twin updates by services.
    pub service_twin_update: Outcomes,
    /// `d2c.twin.read.success` / `.failure`: twin reads by devices.
    pub device_twin_read: Outcomes,
    /// `d2c.twin.update.success` / `.failure`: reported-property updates by devices.
    pub device_twin_update: Outcomes,
    /// `c2d.methods.success` / `.failure`: direct method calls.
    pub methods: Outcomes,
    /// `twinQueries.success` / `.failure`.
    pub queries: Outcomes,
    /// `twinQueries.resultSize`: the twins a query page returned.
    pub query_result_size: SizeHistogram,
    /// `connectedDeviceCount` (read from the store at scrape time).
    pub connected_devices: Gauge,
    /// `devices.totalDevices` (read from the store at scrape time).
    pub total_devices: Gauge,
    /// `RoutingDeliveries`, by `EndpointName`, `EndpointType`, `RoutingSource`, `Result`.
    routing_deliveries: Family<Labels<4>, Counter>,
}

/// A histogram of sizes (1 to 16384, by powers of 4).
#[derive(Debug, Clone)]
pub struct SizeHistogram(pub Histogram);

impl Default for SizeHistogram {
    fn default() -> Self {
        SizeHistogram(Histogram::new(exponential_buckets(1.0, 4.0, 8)))
    }
}

/// A success and a failure counter of one operation.
#[derive(Debug, Default)]
pub struct Outcomes {
    pub success: Counter,
    pub failure: Counter,
}

impl Outcomes {
    /// Counts one operation by its outcome.
    pub fn record<T, E>(&self, result: &Result<T, E>) {
        match result {
            Ok(_) => self.success.inc(),
            Err(_) => self.failure.inc(),
        };
    }
}

/// Figures of this process.
#[derive(Debug)]
pub struct ProcessMetrics {
    /// Open connections by listener (`https` carries REST and MQTT over WebSocket).
    connections: Family<Labels<1>, Gauge>,
    /// Events not yet checkpointed by each consumer group, all partitions together.
    event_log_lag: Family<Labels<1>, Gauge>,
    /// How long store calls took, by port.
    store_latency: Family<Labels<1>, Histogram>,
    /// Cloud-to-device messages queued.
    pub c2d_sent: Counter,
    /// Diagnostic log lines dropped because the writer fell behind.
    pub diagnostic_logs_dropped: Counter,
}

fn latency_histogram() -> Histogram {
    // 100 µs to ~3 s.
    Histogram::new(exponential_buckets(0.0001, 4.0, 8))
}

impl Default for ProcessMetrics {
    fn default() -> Self {
        ProcessMetrics {
            connections: Family::default(),
            event_log_lag: Family::default(),
            store_latency: Family::new_with_constructor(latency_histogram),
            c2d_sent: Counter::default(),
            diagnostic_logs_dropped: Counter::default(),
        }
    }
}

/// An open connection's place in `ironhub_connections`; dropping it closes it there.
#[derive(Debug)]
pub struct ConnectionGuard(Gauge);

impl Drop for ConnectionGuard {
    fn drop(&mut self) {
        self.0.dec();
    }
}

impl DpsMetrics {
    /// `AttestationAttempts`: `status` is `Success` or `Failure`, `protocol` `Mqtt` or `Http`.
    pub fn attestation_attempt(&self, service: &str, status: &str, protocol: &str) {
        self.attestation_attempts
            .get_or_create(&[
                ("ProvisioningServiceName", service.to_owned()),
                ("Status", status.to_owned()),
                ("Protocol", protocol.to_owned()),
            ])
            .inc();
    }

    /// `RegistrationAttempts`: `hub` is empty when none was assigned.
    pub fn registration_attempt(&self, service: &str, hub: &str, status: &str) {
        self.registration_attempts
            .get_or_create(&[
                ("ProvisioningServiceName", service.to_owned()),
                ("IoTHubName", hub.to_owned()),
                ("Status", status.to_owned()),
            ])
            .inc();
    }

    /// `DeviceAssignments`.
    pub fn device_assignment(&self, service: &str, hub: &str) {
        self.device_assignments
            .get_or_create(&[
                ("ProvisioningServiceName", service.to_owned()),
                ("IoTHubName", hub.to_owned()),
            ])
            .inc();
    }
}

impl HubMetrics {
    /// `RoutingDeliveries`: one message delivered (or not) to one endpoint.
    pub fn routing_delivery(&self, endpoint: &str, kind: &str, source: &str, result: &str) {
        self.routing_deliveries
            .get_or_create(&[
                ("EndpointName", endpoint.to_owned()),
                ("EndpointType", kind.to_owned()),
                ("RoutingSource", source.to_owned()),
                ("Result", result.to_owned()),
            ])
            .inc();
    }
}

impl ProcessMetrics {
    /// Counts an open connection of `listener` until the guard drops.
    pub fn connection(&self, listener: &str) -> ConnectionGuard {
        let gauge = self
            .connections
            .get_or_create(&[("listener", listener.to_owned())])
            .clone();
        gauge.inc();
        ConnectionGuard(gauge)
    }

    /// Sets the lag of a consumer group of the built-in event log.
    pub fn set_event_log_lag(&self, group: &str, lag: u64) {
        self.event_log_lag
            .get_or_create(&[("consumer_group", group.to_owned())])
            .set(i64::try_from(lag).unwrap_or(i64::MAX));
    }

    /// Records how long a call of a store port took.
    pub fn store_call(&self, port: &'static str, took: Duration) {
        self.store_latency
            .get_or_create(&[("port", port.to_owned())])
            .observe(took.as_secs_f64());
    }
}

/// An Azure metric's Prometheus name (before `_total`): `prefix_` and the name with `.` → `_`.
pub fn prometheus_name(prefix: &str, azure: &str) -> String {
    format!("{prefix}_{}", azure.replace('.', "_"))
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// A fresh set of metrics in its own registry (the process uses [`metrics`]).
    pub fn new() -> Self {
        let dps = DpsMetrics::default();
        let hub = HubMetrics::default();
        let process = ProcessMetrics::default();
        let mut registry = Registry::default();
        macro_rules! azure {
            ($prefix:expr, $name:expr, $display:expr, $metric:expr $(,)?) => {{
                let name: &str = &$name;
                registry.register(
                    prometheus_name($prefix, name),
                    format!("{} (Azure metric {name})", $display),
                    $metric,
                );
            }};
        }
        azure!(
            "dps",
            "AttestationAttempts",
            "Attestation attempts",
            dps.attestation_attempts.clone(),
        );
        azure!(
            "dps",
            "DeviceAssignments",
            "Devices assigned",
            dps.device_assignments.clone(),
        );
        azure!(
            "dps",
            "RegistrationAttempts",
            "Registration attempts",
            dps.registration_attempts.clone(),
        );
        let counters: [(&str, &str, &Counter); 7] = [
            (
                "d2c.telemetry.ingress.allProtocol",
                "Telemetry message send attempts",
                &hub.telemetry_ingress_all,
            ),
            (
                "d2c.telemetry.ingress.success",
                "Telemetry messages sent",
                &hub.telemetry_ingress_success,
            ),
            (
                "d2c.telemetry.ingress.sendThrottle",
                "Number of throttling errors",
                &hub.telemetry_ingress_send_throttle,
            ),
            (
                "c2d.commands.egress.complete.success",
                "C2D message deliveries completed",
                &hub.c2d_complete,
            ),
            (
                "c2d.commands.egress.abandon.success",
                "C2D messages abandoned",
                &hub.c2d_abandon,
            ),
            (
                "c2d.commands.egress.reject.success",
                "C2D messages rejected",
                &hub.c2d_reject,
            ),
            (
                "C2DMessagesExpired",
                "C2D Messages Expired",
                &hub.c2d_expired,
            ),
        ];
        for (name, display, counter) in counters {
            azure!("iothub", name, display, counter.clone());
        }
        let outcomes: [(&str, &str, &Outcomes); 6] = [
            (
                "c2d.twin.read",
                "Twin reads from back end",
                &hub.service_twin_read,
            ),
            (
                "c2d.twin.update",
                "Twin updates from back end",
                &hub.service_twin_update,
            ),
            (
                "d2c.twin.read",
                "Twin reads from devices",
                &hub.device_twin_read,
            ),
            (
                "d2c.twin.update",
                "Twin updates from devices",
                &hub.device_twin_update,
            ),
            ("c2d.methods", "Direct method invocations", &hub.methods),
            ("twinQueries", "Twin queries", &hub.queries),
        ];
        for (name, display, o) in outcomes {
            azure!(
                "iothub",
                &format!("{name}.success"),
                &format!("Successful {}", display.to_lowercase()),
                o.success.clone(),
            );
            azure!(
                "iothub",
                &format!("{name}.failure"),
                &format!("Failed {}", display.to_lowercase()),
                o.failure.clone(),
            );
        }
        azure!(
            "iothub",
            "twinQueries.resultSize",
            "Twin queries result size",
            hub.query_result_size.0.clone(),
        );
        azure!(
            "iothub",
            "connectedDeviceCount",
            "Connected devices",
            hub.connected_devices.clone(),
        );
        azure!(
            "iothub",
            "devices.totalDevices",
            "Total devices",
            hub.total_devices.clone(),
        );
        azure!(
            "iothub",
            "RoutingDeliveries",
            "Routing Deliveries",
            hub.routing_deliveries.clone(),
        );
        registry.register(
            "ironhub_connections",
            "Open connections by listener",
            process.connections.clone(),
        );
        registry.register(
            "ironhub_event_log_lag",
            "Events of the built-in event log after a consumer group's checkpoints",
            process.event_log_lag.clone(),
        );
        registry.register(
            "ironhub_store_call_duration_seconds",
            "How long calls to the store took, by port",
            process.store_latency.clone(),
        );
        registry.register(
            "ironhub_c2d_messages_sent",
            "Cloud-to-device messages queued",
            process.c2d_sent.clone(),
        );
        registry.register(
            "ironhub_diagnostic_logs_dropped",
            "Diagnostic log lines dropped because the writer fell behind",
            process.diagnostic_logs_dropped.clone(),
        );
        Metrics {
            registry,
            dps,
            hub,
            process,
        }
    }

    /// The metrics in Prometheus's text format (OpenMetrics 1.0).
    pub fn encode(&self) -> String {
        let mut text = String::new();
        // Writing into a String cannot fail.
        let _ = encode(&mut text, &self.registry);
        text
    }
}

static METRICS: LazyLock<Metrics> = LazyLock::new(Metrics::new);

/// This process's metrics.
pub fn metrics() -> &'static Metrics {
    &METRICS
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_text_exposition_names_metrics_as_azure_does() {
        let m = Metrics::new();
        m.dps.attestation_attempt("my-dps", "Failure", "Mqtt");
        m.dps.attestation_attempt("my-dps", "Success", "Http");
        m.dps.attestation_attempt("my-dps", "Success", "Http");
        m.dps
            .registration_attempt("my-dps", "hub.example", "Success");
        m.dps.device_assignment("my-dps", "hub.example");
        m.hub.telemetry_ingress_all.inc();
        m.hub.telemetry_ingress_success.inc();
        m.hub.c2d_reject.inc();
        m.hub.queries.record::<(), ()>(&Ok(()));
        m.hub.total_devices.set(7);
        let _open = m.process.connection("mqtt");
        m.process.store_call("registry", Duration::from_millis(2));
        let text = m.encode();
        for line in [
            "# HELP dps_AttestationAttempts Attestation attempts (Azure metric AttestationAttempts).",
            "# TYPE dps_AttestationAttempts counter",
            r#"dps_AttestationAttempts_total{ProvisioningServiceName="my-dps",Status="Failure",Protocol="Mqtt"} 1"#,
            r#"dps_AttestationAttempts_total{ProvisioningServiceName="my-dps",Status="Success",Protocol="Http"} 2"#,
            r#"dps_RegistrationAttempts_total{ProvisioningServiceName="my-dps",IoTHubName="hub.example",Status="Success"} 1"#,
            r#"dps_DeviceAssignments_total{ProvisioningServiceName="my-dps",IoTHubName="hub.example"} 1"#,
            "# HELP iothub_d2c_telemetry_ingress_success Telemetry messages sent (Azure metric d2c.telemetry.ingress.success).",
            "iothub_d2c_telemetry_ingress_allProtocol_total 1",
            "iothub_d2c_telemetry_ingress_success_total 1",
            "iothub_c2d_commands_egress_reject_success_total 1",
            "iothub_c2d_commands_egress_complete_success_total 0",
            "iothub_twinQueries_success_total 1",
            "iothub_devices_totalDevices 7",
            r#"ironhub_connections{listener="mqtt"} 1"#,
            r#"ironhub_store_call_duration_seconds_count{port="registry"} 1"#,
            "# EOF",
        ] {
            assert!(
                text.lines().any(|l| l == line),
                "{line:?} missing from:\n{text}"
            );
        }
    }

    #[test]
    fn a_closed_connection_leaves_the_gauge() {
        let m = Metrics::new();
        let open = m.process.connection("amqp");
        drop(open);
        assert!(
            m.encode()
                .contains(r#"ironhub_connections{listener="amqp"} 0"#)
        );
    }

    #[test]
    fn names_map_dots_to_underscores() {
        assert_eq!(
            prometheus_name("iothub", "c2d.commands.egress.complete.success"),
            "iothub_c2d_commands_egress_complete_success"
        );
    }
}
