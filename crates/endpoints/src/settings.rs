//! The settings of each kind of endpoint as the routing document holds them, and their
//! validation. Names and ranges follow IoT Hub's ARM resource where ARM has the kind
//! (`RoutingStorageContainerProperties`); webhooks and NATS subjects are ironhub's own.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

pub use crate::error::EndpointConfigError;
use crate::file_name::FileNameFormat;

/// The kinds of external endpoint, by the name of their list in the routing document.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum EndpointKind {
    /// `storageContainers`: files in a directory (IoT Hub's storage endpoint).
    StorageContainers,
    /// `webhooks`: an HTTP(S) POST per message.
    Webhooks,
    /// `natsSubjects`: a NATS publish per message.
    NatsSubjects,
}

impl EndpointKind {
    /// Every kind, in the order the routing document lists them.
    pub const ALL: [EndpointKind; 3] = [
        EndpointKind::StorageContainers,
        EndpointKind::Webhooks,
        EndpointKind::NatsSubjects,
    ];

    /// The name of the kind's list in the routing document (`storageContainers`, …).
    pub fn list_name(self) -> &'static str {
        match self {
            EndpointKind::StorageContainers => "storageContainers",
            EndpointKind::Webhooks => "webhooks",
            EndpointKind::NatsSubjects => "natsSubjects",
        }
    }

    /// The kind whose list is called `name`.
    pub fn from_list_name(name: &str) -> Option<EndpointKind> {
        EndpointKind::ALL
            .into_iter()
            .find(|k| k.list_name() == name)
    }
}

/// How a file endpoint encodes messages (ARM's `encoding`, matched ignoring case).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Encoding {
    /// Avro object container files, uncompressed (IoT Hub's default).
    #[default]
    Avro,
    /// Avro object container files with deflate-compressed blocks.
    AvroDeflate,
    /// One JSON object a line.
    Json,
}

impl Serialize for Encoding {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(match self {
            Encoding::Avro => "avro",
            Encoding::AvroDeflate => "avroDeflate",
            Encoding::Json => "json",
        })
    }
}

impl<'de> Deserialize<'de> for Encoding {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        match text.to_ascii_lowercase().as_str() {
            "avro" => Ok(Encoding::Avro),
            "avrodeflate" => Ok(Encoding::AvroDeflate),
            "json" => Ok(Encoding::Json),
            _ => Err(serde::de::Error::custom(format!(
                "encoding '{text}' is not one of avro, avroDeflate, json"
            ))),
        }
    }
}

/// IoT Hub's default `batchFrequencyInSeconds`.
pub const DEFAULT_BATCH_FREQUENCY_SECS: u32 = 300;
/// IoT Hub's default `maxChunkSizeInBytes` (300 MiB).
pub const DEFAULT_MAX_CHUNK_BYTES: u64 = 314_572_800;
/// IoT Hub's smallest `batchFrequencyInSeconds` (ARM's `RoutingStorageContainerProperties`).
pub const MIN_BATCH_FREQUENCY_SECS: u32 = 60;
/// IoT Hub's largest `batchFrequencyInSeconds`.
pub const MAX_BATCH_FREQUENCY_SECS: u32 = 720;
/// IoT Hub's smallest `maxChunkSizeInBytes` (10 MiB).
pub const MIN_CHUNK_BYTES: u64 = 10_485_760;
/// IoT Hub's largest `maxChunkSizeInBytes` (500 MiB).
pub const MAX_CHUNK_BYTES: u64 = 524_288_000;

/// What a server lets endpoint settings be beyond IoT Hub's ranges. The default is none:
/// IoT Hub's rules exactly.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Allowances {
    /// File endpoints may close chunks from 1 s and 1 byte on (IoT Hub: 60 s and 10 MiB), so
    /// that tests and demonstrations need not wait a minute (`serve --allow-small-file-batches`).
    pub small_file_batches: bool,
}

impl Allowances {
    /// Everything a stored document may hold: what some server once accepted.
    pub const ANY: Allowances = Allowances {
        small_file_batches: true,
    };
}
/// How many failed attempts a message gets before it is dead-lettered, unless the endpoint
/// says otherwise.
pub const DEFAULT_MAX_DELIVERY_COUNT: u32 = 10;
/// The most `maxDeliveryCount` may be.
pub const MAX_DELIVERY_COUNT: u32 = 100;
/// How long one delivery attempt may take, unless the endpoint says otherwise.
pub const DEFAULT_TIMEOUT_SECS: u32 = 30;

/// A file endpoint: ARM's `RoutingStorageContainerProperties`. The container is a directory:
/// a relative `containerName` (an Azure container name) lies under the server's endpoint root,
/// an absolute one is used as it is. The storage account fields of ARM are accepted and
/// ignored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StorageContainerSettings {
    pub name: String,
    pub container_name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file_name_format: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub batch_frequency_in_seconds: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_chunk_size_in_bytes: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub encoding: Option<Encoding>,
}

impl StorageContainerSettings {
    /// The file name format, IoT Hub's default when none is given.
    pub fn file_name_format(&self) -> Result<FileNameFormat, EndpointConfigError> {
        FileNameFormat::parse(
            self.file_name_format
                .as_deref()
                .unwrap_or(crate::file_name::DEFAULT_FORMAT),
        )
    }

    pub fn batch_frequency_secs(&self) -> u32 {
        self.batch_frequency_in_seconds
            .unwrap_or(DEFAULT_BATCH_FREQUENCY_SECS)
    }

    pub fn max_chunk_bytes(&self) -> u64 {
        self.max_chunk_size_in_bytes
            .unwrap_or(DEFAULT_MAX_CHUNK_BYTES)
    }

    /// The directory of the container: `root/containerName`, or `containerName` if absolute.
    pub fn directory(&self, root: &std::path::Path) -> PathBuf {
        let container = std::path::Path::new(&self.container_name);
        if container.is_absolute() {
            container.to_path_buf()
        } else {
            root.join(container)
        }
    }
}

/// A webhook endpoint: each message is `POST`ed to `url`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct WebhookSettings {
    pub name: String,
    /// `http://` or `https://`.
    pub url: String,
    /// Extra headers sent with every delivery (e.g. an API key).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub headers: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_delivery_count: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_in_seconds: Option<u32>,
    /// A PEM file of CA certificates trusted for an `https` receiver, besides the system's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_file: Option<PathBuf>,
}

/// A NATS subject endpoint: each message is published to `subject` on the server at `url`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NatsSubjectSettings {
    pub name: String,
    /// `nats://host:port` or `tls://host:port`.
    pub url: String,
    /// The subject; `{deviceId}` is replaced by the sender's device id (see `nats.rs`).
    pub subject: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token: Option<String>,
    /// A PEM file of CA certificates trusted for a TLS server (implies TLS).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_file: Option<PathBuf>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_delivery_count: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_in_seconds: Option<u32>,
}

/// One endpoint's validated settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Settings {
    StorageContainer(StorageContainerSettings),
    Webhook(WebhookSettings),
    NatsSubject(NatsSubjectSettings),
}

impl Settings {
    /// The endpoint's name.
    pub fn name(&self) -> &str {
        match self {
            Settings::StorageContainer(s) => &s.name,
            Settings::Webhook(s) => &s.name,
            Settings::NatsSubject(s) => &s.name,
        }
    }

    pub fn kind(&self) -> EndpointKind {
        match self {
            Settings::StorageContainer(_) => EndpointKind::StorageContainers,
            Settings::Webhook(_) => EndpointKind::Webhooks,
            Settings::NatsSubject(_) => EndpointKind::NatsSubjects,
        }
    }

    /// Failed attempts after which a message is dead-lettered.
    pub fn max_delivery_count(&self) -> u32 {
        match self {
            Settings::StorageContainer(_) => None,
            Settings::Webhook(s) => s.max_delivery_count,
            Settings::NatsSubject(s) => s.max_delivery_count,
        }
        .unwrap_or(DEFAULT_MAX_DELIVERY_COUNT)
    }
}

/// Reads and checks one endpoint's settings, as found in the routing document's list of
/// `kind`, by IoT Hub's rules. Every rule is checked here, so a sink built from the result
/// only fails at delivery.
pub fn validate(
    kind: EndpointKind,
    value: &serde_json::Value,
) -> Result<Settings, EndpointConfigError> {
    validate_with(kind, value, Allowances::default())
}

/// [`validate`] with the server's `allowances` beyond IoT Hub's ranges.
pub fn validate_with(
    kind: EndpointKind,
    value: &serde_json::Value,
    allowances: Allowances,
) -> Result<Settings, EndpointConfigError> {
    let what = kind.list_name();
    let parse_error =
        |e: serde_json::Error| EndpointConfigError::new(format!("invalid {what} endpoint: {e}"));
    let settings = match kind {
        EndpointKind::StorageContainers => {
            let s: StorageContainerSettings =
                serde_json::from_value(value.clone()).map_err(parse_error)?;
            check_storage(&s, allowances)?;
            Settings::StorageContainer(s)
        }
        EndpointKind::Webhooks => {
            let s: WebhookSettings = serde_json::from_value(value.clone()).map_err(parse_error)?;
            check_webhook(&s)?;
            Settings::Webhook(s)
        }
        EndpointKind::NatsSubjects => {
            let s: NatsSubjectSettings =
                serde_json::from_value(value.clone()).map_err(parse_error)?;
            check_nats(&s)?;
            Settings::NatsSubject(s)
        }
    };
    Ok(settings)
}

/// IoT Hub's endpoint names: letters, digits, `.`, `_`, `-`, at most 64, not a reserved name.
pub fn check_endpoint_name(name: &str) -> Result<(), EndpointConfigError> {
    const RESERVED: [&str; 3] = ["events", "fileNotifications", "$default"];
    if name.is_empty() || name.len() > 64 {
        return Err(EndpointConfigError::new(format!(
            "endpoint name '{name}' must have 1 to 64 characters"
        )));
    }
    if !name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
    {
        return Err(EndpointConfigError::new(format!(
            "endpoint name '{name}' may only contain letters, digits, '.', '_' and '-'"
        )));
    }
    if RESERVED.iter().any(|r| r.eq_ignore_ascii_case(name)) {
        return Err(EndpointConfigError::new(format!(
            "endpoint name '{name}' is reserved"
        )));
    }
    Ok(())
}

fn check_storage(
    s: &StorageContainerSettings,
    allowances: Allowances,
) -> Result<(), EndpointConfigError> {
    check_endpoint_name(&s.name)?;
    let container = std::path::Path::new(&s.container_name);
    if !container.is_absolute() && !is_container_name(&s.container_name) {
        return Err(EndpointConfigError::new(format!(
            "containerName '{}' must be an absolute directory or a container name (3 to 63 \
             lower-case letters, digits and single hyphens, starting and ending with a letter \
             or digit)",
            s.container_name
        )));
    }
    if container.is_absolute()
        && container
            .components()
            .any(|c| matches!(c, std::path::Component::ParentDir))
    {
        return Err(EndpointConfigError::new(format!(
            "containerName '{}' may not contain '..'",
            s.container_name
        )));
    }
    s.file_name_format()?;
    let (min_frequency, min_chunk) = if allowances.small_file_batches {
        (1, 1)
    } else {
        (MIN_BATCH_FREQUENCY_SECS, MIN_CHUNK_BYTES)
    };
    let frequency = s.batch_frequency_secs();
    if !(min_frequency..=MAX_BATCH_FREQUENCY_SECS).contains(&frequency) {
        return Err(EndpointConfigError::new(format!(
            "batchFrequencyInSeconds {frequency} is out of range: it must be {min_frequency} \
             to {MAX_BATCH_FREQUENCY_SECS}"
        )));
    }
    let chunk = s.max_chunk_bytes();
    if !(min_chunk..=MAX_CHUNK_BYTES).contains(&chunk) {
        return Err(EndpointConfigError::new(format!(
            "maxChunkSizeInBytes {chunk} is out of range: it must be {min_chunk} to \
             {MAX_CHUNK_BYTES}"
        )));
    }
    Ok(())
}

/// Azure Storage's container names.
fn is_container_name(name: &str) -> bool {
    (3..=63).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !name.starts_with('-')
        && !name.ends_with('-')
        && !name.contains("--")
}

fn check_common(
    name: &str,
    max_delivery_count: Option<u32>,
    timeout: Option<u32>,
) -> Result<(), EndpointConfigError> {
    check_endpoint_name(name)?;
    if let Some(n) = max_delivery_count
        && !(1..=MAX_DELIVERY_COUNT).contains(&n)
    {
        return Err(EndpointConfigError::new(format!(
            "maxDeliveryCount {n} is out of range: it must be 1 to {MAX_DELIVERY_COUNT}"
        )));
    }
    if let Some(t) = timeout
        && !(1..=300).contains(&t)
    {
        return Err(EndpointConfigError::new(format!(
            "timeoutInSeconds {t} is out of range: it must be 1 to 300"
        )));
    }
    Ok(())
}

fn check_ca_file(path: &Option<PathBuf>) -> Result<(), EndpointConfigError> {
    if let Some(path) = path {
        let pem = std::fs::read_to_string(path).map_err(|e| {
            EndpointConfigError::new(format!("caFile {} cannot be read: {e}", path.display()))
        })?;
        if !pem.contains("-----BEGIN CERTIFICATE-----") {
            return Err(EndpointConfigError::new(format!(
                "caFile {} holds no PEM certificate",
                path.display()
            )));
        }
    }
    Ok(())
}

fn check_webhook(s: &WebhookSettings) -> Result<(), EndpointConfigError> {
    check_common(&s.name, s.max_delivery_count, s.timeout_in_seconds)?;
    let uri: http::Uri = s
        .url
        .parse()
        .map_err(|e| EndpointConfigError::new(format!("url '{}' is not a URL: {e}", s.url)))?;
    if !matches!(uri.scheme_str(), Some("http" | "https")) || uri.host().is_none_or(str::is_empty) {
        return Err(EndpointConfigError::new(format!(
            "url '{}' must be an http:// or https:// URL with a host",
            s.url
        )));
    }
    for (name, value) in &s.headers {
        let header = http::HeaderName::from_bytes(name.as_bytes()).map_err(|_| {
            EndpointConfigError::new(format!("header name '{name}' is not a valid HTTP header"))
        })?;
        if matches!(
            header.as_str(),
            "host" | "content-length" | "content-type" | "transfer-encoding" | "connection"
        ) || header.as_str().starts_with("iothub-")
        {
            return Err(EndpointConfigError::new(format!(
                "header '{name}' is set by the delivery itself"
            )));
        }
        http::HeaderValue::from_str(value).map_err(|_| {
            EndpointConfigError::new(format!("the value of header '{name}' is not valid"))
        })?;
    }
    check_ca_file(&s.ca_file)
}

fn check_nats(s: &NatsSubjectSettings) -> Result<(), EndpointConfigError> {
    check_common(&s.name, s.max_delivery_count, s.timeout_in_seconds)?;
    let (scheme, rest) = s.url.split_once("://").unwrap_or(("", ""));
    if !matches!(scheme, "nats" | "tls") || rest.is_empty() || rest.contains('/') {
        return Err(EndpointConfigError::new(format!(
            "url '{}' must be nats://host:port or tls://host:port",
            s.url
        )));
    }
    crate::subject::check_subject(&s.subject)?;
    if s.password.is_some() != s.user.is_some() {
        return Err(EndpointConfigError::new(
            "user and password go together".to_owned(),
        ));
    }
    if s.token.is_some() && s.user.is_some() {
        return Err(EndpointConfigError::new(
            "give either a token or a user and password, not both".to_owned(),
        ));
    }
    check_ca_file(&s.ca_file)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn refused(kind: EndpointKind, value: serde_json::Value) -> String {
        validate(kind, &value).expect_err("refused").0
    }

    #[test]
    fn storage_defaults_are_iot_hubs() {
        let s = validate(
            EndpointKind::StorageContainers,
            &json!({"name": "cold", "containerName": "telemetry",
                    "connectionString": "ignored", "encoding": "JSON"}),
        )
        .expect("valid");
        let Settings::StorageContainer(s) = s else {
            panic!("kind")
        };
        assert_eq!(s.batch_frequency_secs(), 300);
        assert_eq!(s.max_chunk_bytes(), 314_572_800);
        assert_eq!(s.encoding, Some(Encoding::Json));
        assert_eq!(
            s.directory(std::path::Path::new("/data")),
            PathBuf::from("/data/telemetry")
        );
    }

    #[test]
    fn file_batches_follow_iot_hubs_ranges_unless_the_server_allows_small_ones() {
        let kind = EndpointKind::StorageContainers;
        for (field, value) in [
            ("batchFrequencyInSeconds", json!(59)),
            ("batchFrequencyInSeconds", json!(1)),
            ("maxChunkSizeInBytes", json!(10_485_759)),
            ("maxChunkSizeInBytes", json!(524_288_001u64)),
        ] {
            let doc = json!({"name": "a", "containerName": "ccc", field: value});
            assert!(
                refused(kind, doc.clone()).contains(field),
                "{field} {value}"
            );
            let small = validate_with(kind, &doc, Allowances::ANY);
            assert_eq!(
                small.is_ok(),
                value != json!(524_288_001u64),
                "{field} {value}"
            );
        }
        for (field, value) in [
            ("batchFrequencyInSeconds", json!(60)),
            ("batchFrequencyInSeconds", json!(720)),
            ("maxChunkSizeInBytes", json!(10_485_760)),
            ("maxChunkSizeInBytes", json!(524_288_000)),
        ] {
            let doc = json!({"name": "a", "containerName": "ccc", field: value});
            assert!(validate(kind, &doc).is_ok(), "{field} {value}");
        }
    }

    #[test]
    fn storage_rules_are_explained() {
        let kind = EndpointKind::StorageContainers;
        assert!(
            refused(kind, json!({"name": "a", "containerName": "../x"})).contains("containerName")
        );
        assert!(refused(kind, json!({"name": "a", "containerName": "/x/../y"})).contains("'..'"));
        assert!(
            refused(
                kind,
                json!({"name": "a", "containerName": "ccc", "batchFrequencyInSeconds": 721})
            )
            .contains("batchFrequencyInSeconds 721")
        );
        assert!(
            refused(
                kind,
                json!({"name": "a", "containerName": "ccc", "maxChunkSizeInBytes": 0})
            )
            .contains("maxChunkSizeInBytes")
        );
        assert!(
            refused(
                kind,
                json!({"name": "a", "containerName": "ccc", "encoding": "xml"})
            )
            .contains("encoding 'xml'")
        );
        assert!(
            refused(
                kind,
                json!({"name": "a", "containerName": "ccc", "fileNameFormat": "{iothub}/{YYYY}"})
            )
            .contains("{partition}")
        );
        assert!(
            refused(kind, json!({"name": "events", "containerName": "ccc"})).contains("reserved")
        );
        assert!(refused(kind, json!({"containerName": "ccc"})).contains("name"));
    }

    #[test]
    fn webhook_rules_are_explained() {
        let kind = EndpointKind::Webhooks;
        assert!(refused(kind, json!({"name": "w", "url": "ftp://x/"})).contains("http://"));
        assert!(refused(kind, json!({"name": "w", "url": "not a url"})).contains("not a URL"));
        assert!(
            refused(
                kind,
                json!({"name": "w", "url": "http://h/", "maxDeliveryCount": 0})
            )
            .contains("maxDeliveryCount 0")
        );
        assert!(
            refused(
                kind,
                json!({"name": "w", "url": "http://h/", "headers": {"Content-Type": "x"}})
            )
            .contains("set by the delivery")
        );
        assert!(
            refused(
                kind,
                json!({"name": "w", "url": "http://h/", "caFile": "/nonexistent.pem"})
            )
            .contains("cannot be read")
        );
        assert!(
            refused(kind, json!({"name": "w", "url": "http://h/", "retries": 3}))
                .contains("unknown field")
        );
        let ok = validate(
            kind,
            &json!({"name": "w", "url": "https://h:8443/in", "headers": {"x-api-key": "k"},
                    "maxDeliveryCount": 3}),
        )
        .expect("valid");
        assert_eq!(ok.max_delivery_count(), 3);
        assert_eq!(ok.name(), "w");
    }

    #[test]
    fn nats_rules_are_explained() {
        let kind = EndpointKind::NatsSubjects;
        assert!(
            refused(
                kind,
                json!({"name": "n", "url": "http://h:4222", "subject": "a"})
            )
            .contains("nats://")
        );
        assert!(
            refused(
                kind,
                json!({"name": "n", "url": "nats://h:4222", "subject": "a.*"})
            )
            .contains("wildcard")
        );
        assert!(
            refused(
                kind,
                json!({"name": "n", "url": "nats://h:4222", "subject": "a", "user": "u"})
            )
            .contains("together")
        );
        validate(
            kind,
            &json!({"name": "n", "url": "nats://h:4222", "subject": "telemetry.{deviceId}"}),
        )
        .expect("valid");
    }

    #[test]
    fn kinds_have_list_names() {
        for kind in EndpointKind::ALL {
            assert_eq!(EndpointKind::from_list_name(kind.list_name()), Some(kind));
        }
        assert_eq!(EndpointKind::from_list_name("serviceBusQueues"), None);
    }
}
