//! Diagnostic logs: one JSON object a line in the shape of Azure's resource logs (`time`,
//! `resourceId`, `operationName`, `category`, `level`, `resultType`, `resultSignature`,
//! `resultDescription`, `durationMs`, `callerIpAddress`, `correlationId`, `location`,
//! `properties`), for the categories the operator selected, to standard error or to a
//! size-rotated file.
//!
//! The domains build a [`Record`] only when [`enabled`] says its category is on (one atomic
//! load), and [`emit`] hands the line to a writer thread through a bounded queue: a request
//! never waits on the disk, and a line that finds the queue full is dropped and counted in
//! `ironhub_diagnostic_logs_dropped`. A record holds what the domain chose to put there; no
//! domain puts a key, token, signature or connection string in one.

use std::io::Write as _;
use std::path::PathBuf;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::mpsc::{SyncSender, TrySendError, sync_channel};
use std::time::{Duration, Instant};

use serde::Serialize;
use serde_json::{Map, Value};

use crate::rotate::RotatingFile;

/// A resource log category: IoT Hub's and DPS's, named as Azure names them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Category {
    Connections,
    DeviceTelemetry,
    C2DCommands,
    DeviceIdentityOperations,
    TwinQueries,
    DirectMethods,
    Routes,
    /// DPS: device attestation and registration.
    DeviceOperations,
    /// DPS: the service API (enrollments, registrations).
    ServiceOperations,
}

impl Category {
    /// Every category, IoT Hub's first.
    pub const ALL: [Category; 9] = [
        Category::Connections,
        Category::DeviceTelemetry,
        Category::C2DCommands,
        Category::DeviceIdentityOperations,
        Category::TwinQueries,
        Category::DirectMethods,
        Category::Routes,
        Category::DeviceOperations,
        Category::ServiceOperations,
    ];

    /// Azure's name of the category.
    pub fn name(self) -> &'static str {
        match self {
            Category::Connections => "Connections",
            Category::DeviceTelemetry => "DeviceTelemetry",
            Category::C2DCommands => "C2DCommands",
            Category::DeviceIdentityOperations => "DeviceIdentityOperations",
            Category::TwinQueries => "TwinQueries",
            Category::DirectMethods => "DirectMethods",
            Category::Routes => "Routes",
            Category::DeviceOperations => "DeviceOperations",
            Category::ServiceOperations => "ServiceOperations",
        }
    }

    /// The category of Azure's name (any case).
    pub fn parse(name: &str) -> Option<Category> {
        Category::ALL
            .into_iter()
            .find(|c| c.name().eq_ignore_ascii_case(name.trim()))
    }

    /// Whose log it is.
    pub fn resource(self) -> Resource {
        match self {
            Category::DeviceOperations | Category::ServiceOperations => Resource::Dps,
            _ => Resource::Hub,
        }
    }

    fn bit(self) -> u32 {
        1 << (self as u32)
    }
}

/// Parses `all` or a comma-separated list of category names.
pub fn parse_categories(list: &str) -> Result<Vec<Category>, String> {
    if list.trim().eq_ignore_ascii_case("all") {
        return Ok(Category::ALL.to_vec());
    }
    list.split(',')
        .filter(|s| !s.trim().is_empty())
        .map(|s| {
            Category::parse(s).ok_or_else(|| {
                let names: Vec<_> = Category::ALL.iter().map(|c| c.name()).collect();
                format!(
                    "unknown diagnostic log category {:?}: use all or some of {}",
                    s.trim(),
                    names.join(", ")
                )
            })
        })
        .collect()
}

/// The Azure resource a record is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resource {
    /// The IoT hub (`Microsoft.Devices/IotHubs`).
    Hub,
    /// The provisioning service (`Microsoft.Devices/provisioningServices`).
    Dps,
}

/// A record's severity, as Azure's logs spell it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Level {
    Information,
    Warning,
    Error,
}

/// A domain error as a failed record shows it: its HTTP status, Azure error code and message.
pub trait AzureError: std::fmt::Display {
    /// The HTTP status.
    fn status(&self) -> u16;
    /// Azure's error code (`401002`, …).
    fn code(&self) -> u32;
}

/// One diagnostic log record, built by the domain.
#[derive(Debug, Clone)]
pub struct Record {
    category: Category,
    operation: &'static str,
    level: Level,
    result_type: String,
    result_signature: String,
    result_description: String,
    duration: Option<Duration>,
    correlation_id: Option<String>,
    protocol: Option<String>,
    properties: Map<String, Value>,
}

impl Record {
    /// A successful `operation` of `category`.
    pub fn new(category: Category, operation: &'static str) -> Self {
        Record {
            category,
            operation,
            level: Level::Information,
            result_type: "Success".into(),
            result_signature: String::new(),
            result_description: String::new(),
            duration: None,
            correlation_id: None,
            protocol: None,
            properties: Map::new(),
        }
    }

    /// Marks it failed with the HTTP status and Azure's error code and message: `ClientError`
    /// for a 4xx, `Failure` otherwise.
    pub fn failed(mut self, status: u16, code: u32, description: impl std::fmt::Display) -> Self {
        self.level = if status < 500 {
            Level::Warning
        } else {
            Level::Error
        };
        self.result_type = if status < 500 {
            "ClientError"
        } else {
            "Failure"
        }
        .into();
        self.result_signature = status.to_string();
        self.result_description = format!("{code}: {description}");
        self
    }

    /// Marks it failed when `result` is an error (see [`Record::failed`]).
    pub fn outcome<T, E: AzureError>(self, result: &Result<T, E>) -> Self {
        match result {
            Ok(_) => self,
            Err(e) => self.failed(e.status(), e.code(), e),
        }
    }

    /// How long it took, measured from `started`.
    pub fn since(mut self, started: Instant) -> Self {
        self.duration = Some(started.elapsed());
        self
    }

    /// The id that ties it to other records (a message id, a registration's operation id).
    pub fn correlation(mut self, id: impl Into<String>) -> Self {
        self.correlation_id = Some(id.into());
        self
    }

    /// The protocol the request came over (`properties.protocol`); by default the one of the
    /// caller's listener.
    pub fn protocol(mut self, protocol: impl Into<String>) -> Self {
        self.protocol = Some(protocol.into());
        self
    }

    /// One field of `properties`.
    pub fn property(mut self, name: &str, value: impl Into<Value>) -> Self {
        self.properties.insert(name.to_owned(), value.into());
        self
    }

    /// The category.
    pub fn category(&self) -> Category {
        self.category
    }

    /// The record's JSON line, as [`emit`] writes it.
    pub fn to_line(&self, settings: &Settings) -> String {
        let caller = crate::caller::current();
        let mut properties = self.properties.clone();
        let protocol = self
            .protocol
            .clone()
            .or_else(|| caller.map(|c| listener_protocol(c.listener).to_owned()));
        if let Some(p) = protocol {
            properties.entry("protocol").or_insert(Value::String(p));
        }
        if let Some(c) = caller {
            properties
                .entry("maskedIpAddress")
                .or_insert(Value::String(c.masked_ip()));
        }
        let line = Line {
            time: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            resource_id: settings.resource_id(self.category.resource()),
            operation_name: self.operation,
            operation_version: crate::caller::operation_version().unwrap_or_default(),
            category: self.category.name(),
            level: self.level,
            result_type: &self.result_type,
            result_signature: &self.result_signature,
            result_description: &self.result_description,
            duration_ms: self
                .duration
                .map_or_else(|| "0".to_owned(), |d| d.as_millis().to_string()),
            caller_ip_address: caller.map(|c| c.masked_ip()).unwrap_or_default(),
            correlation_id: self
                .correlation_id
                .clone()
                .unwrap_or_else(|| settings.next_correlation_id()),
            location: &settings.location,
            properties: Value::Object(properties).to_string(),
        };
        serde_json::to_string(&line).unwrap_or_default()
    }
}

/// Azure's protocol name for a listener's connections.
fn listener_protocol(listener: &str) -> &'static str {
    match listener {
        "mqtt" => "Mqtt",
        "amqp" => "Amqp",
        "mqtt-ws" => "MqttWs",
        "amqp-ws" => "AmqpWs",
        _ => "Http",
    }
}

/// The line's fields, in Azure's order; `properties` is a JSON string as in Azure's logs.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Line<'a> {
    time: String,
    resource_id: String,
    operation_name: &'static str,
    operation_version: String,
    category: &'static str,
    level: Level,
    result_type: &'a str,
    result_signature: &'a str,
    result_description: &'a str,
    duration_ms: String,
    caller_ip_address: String,
    correlation_id: String,
    location: &'a str,
    properties: String,
}

/// Where and what the process logs.
#[derive(Debug, Clone)]
pub struct Settings {
    /// The categories written.
    pub categories: Vec<Category>,
    /// The file, or standard error when `None`.
    pub file: Option<PathBuf>,
    /// Size at which the file rotates.
    pub max_bytes: u64,
    /// Rotated files kept beside it.
    pub keep: u32,
    /// The hub's resource name (its host name).
    pub hub_name: String,
    /// The DPS's resource name (its host name).
    pub dps_name: String,
    /// What `location` says: this node's id.
    pub location: String,
}

impl Settings {
    fn resource_id(&self, resource: Resource) -> String {
        let (kind, name) = match resource {
            Resource::Hub => ("IOTHUBS", &self.hub_name),
            Resource::Dps => ("PROVISIONINGSERVICES", &self.dps_name),
        };
        format!(
            "/SUBSCRIPTIONS/00000000-0000-0000-0000-000000000000/RESOURCEGROUPS/IRONHUB/PROVIDERS/MICROSOFT.DEVICES/{kind}/{}",
            name.to_uppercase()
        )
    }

    /// A GUID-shaped id for a record that has no other.
    fn next_correlation_id(&self) -> String {
        static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
        static START: OnceLock<u64> = OnceLock::new();
        let start = *START.get_or_init(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos() as u64)
        });
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        format!(
            "{:08x}-{:04x}-4{:03x}-8{:03x}-{:012x}",
            (start >> 32) as u32,
            (start >> 16) as u16,
            start & 0xfff,
            (n >> 48) & 0xfff,
            n & 0xffff_ffff_ffff
        )
    }
}

/// The selected categories, as bits (0 until [`install`]).
static ENABLED: AtomicU32 = AtomicU32::new(0);

struct Sink {
    settings: Settings,
    lines: SyncSender<String>,
}

static SINK: OnceLock<Sink> = OnceLock::new();

/// Lines waiting for the writer at most.
const QUEUE: usize = 16 * 1024;

/// Whether records of `category` are written (build a record only when they are).
pub fn enabled(category: Category) -> bool {
    ENABLED.load(Ordering::Relaxed) & category.bit() != 0
}

/// Writes a record, if its category is on.
pub fn emit(record: Record) {
    if !enabled(record.category) {
        return;
    }
    let Some(sink) = SINK.get() else { return };
    let line = record.to_line(&sink.settings);
    if let Err(TrySendError::Full(_)) = sink.lines.try_send(line) {
        crate::metrics().process.diagnostic_logs_dropped.inc();
    }
}

/// Starts the process's diagnostic log (once; a second call is an error).
pub fn install(settings: Settings) -> std::io::Result<()> {
    let mut file = match &settings.file {
        Some(path) => Some(RotatingFile::open(path, settings.max_bytes, settings.keep)?),
        None => None,
    };
    let (tx, rx) = sync_channel::<String>(QUEUE);
    let bits = settings.categories.iter().fold(0, |b, c| b | c.bit());
    SINK.set(Sink {
        settings,
        lines: tx,
    })
    .map_err(|_| std::io::Error::other("the diagnostic log is already started"))?;
    std::thread::Builder::new()
        .name("diagnostic-logs".into())
        .spawn(move || {
            for line in rx {
                let written = match &mut file {
                    Some(f) => f.write_line(line.as_bytes()),
                    None => writeln!(std::io::stderr(), "{line}"),
                };
                if let Err(e) = written {
                    let _ = writeln!(std::io::stderr(), "diagnostic log: {e}");
                }
            }
        })?;
    ENABLED.store(bits, Ordering::Relaxed);
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn settings() -> Settings {
        Settings {
            categories: vec![Category::Connections],
            file: None,
            max_bytes: 1024,
            keep: 1,
            hub_name: "myhub.example".into(),
            dps_name: "mydps.example".into(),
            location: "node-1".into(),
        }
    }

    #[test]
    fn categories_parse_by_azure_name_or_all() {
        assert_eq!(
            parse_categories("Connections, c2dcommands").unwrap(),
            vec![Category::Connections, Category::C2DCommands]
        );
        assert_eq!(parse_categories("all").unwrap().len(), 9);
        assert!(parse_categories("Connections,Nope").is_err());
    }

    #[tokio::test]
    async fn a_record_has_the_resource_log_fields() {
        let caller = crate::Caller {
            ip: std::net::IpAddr::from([10, 1, 2, 3]),
            listener: "mqtt",
        };
        let record = Record::new(Category::Connections, "deviceConnect")
            .property("deviceId", "d1")
            .failed(401, 401002, "Unauthorized");
        let line = crate::caller::scope(
            caller,
            crate::caller::with_api_version(Some("2019-03-31"), async {
                record.to_line(&settings())
            }),
        )
        .await;
        let v: Value = serde_json::from_str(&line).unwrap();
        assert_eq!(v["category"], "Connections");
        assert_eq!(v["operationName"], "deviceConnect");
        assert_eq!(v["resultType"], "ClientError");
        assert_eq!(v["resultSignature"], "401");
        assert_eq!(v["callerIpAddress"], "10.1.2.XXX");
        assert_eq!(v["location"], "node-1");
        assert_eq!(v["operationVersion"], "March2019");
        assert!(
            v["resourceId"]
                .as_str()
                .unwrap()
                .ends_with("/IOTHUBS/MYHUB.EXAMPLE")
        );
        assert_eq!(v["correlationId"].as_str().unwrap().len(), 36);
        let props: Value = serde_json::from_str(v["properties"].as_str().unwrap()).unwrap();
        assert_eq!(props["deviceId"], "d1");
        assert_eq!(props["protocol"], "Mqtt");
        assert_eq!(props["maskedIpAddress"], "10.1.2.XXX");
        for field in ["time", "durationMs", "resultDescription", "level"] {
            assert!(v.get(field).is_some(), "{field}");
        }
    }
}
