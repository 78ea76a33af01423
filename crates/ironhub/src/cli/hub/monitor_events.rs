//! `ironhub hub monitor-events`: device telemetry as it reaches the hub, printed the way
//! `az iot hub monitor-events` prints it.
//!
//! az reads the hub's built-in Event Hubs endpoint over AMQP; ironhub reads the same log through
//! its streaming REST API (`GET /events/consumergroups/{group}/stream`) and reshapes each event
//! into az's output, `{"event": {"origin", "module", "interface", "component", ["properties":
//! {"system", "application"}], ["annotations"], "payload"}}`, as az's `CommonParser` builds it:
//!
//! - `properties.system` holds what AMQP carries in a message's *properties* section, under
//!   uamqp's attribute names (`message_id`, `correlation_id`, `user_id`, `to`, `content_type`,
//!   `content_encoding`, `absolute_expiry_time`);
//! - `annotations` holds the message annotations: the `iothub-*`, `dt-*` and `x-opt-*` entries,
//!   with times (`iothub-enqueuedtime`, `x-opt-enqueued-time`) in Unix milliseconds, as uamqp
//!   decodes AMQP timestamps;
//! - `payload` is the body's text, parsed as JSON only when the content type (the message's,
//!   or `--content-type`) says `application/json`.

use std::io::Write as _;
use std::time::Duration;

use anyhow::{Context as _, bail};
use base64::Engine as _;
use chrono::{DateTime, SecondsFormat, TimeZone as _, Utc};
use clap::{ArgAction, Args, ValueEnum};
use serde::Serialize;
use serde_json::{Map, Value};

use crate::cli::login::Session;
use crate::cli::output::Format;

/// What az prints for a body that is not text.
pub const NON_DECODABLE_PAYLOAD: &str = "{{non-decodable payload}}";

/// Seconds the server may stay idle past the monitor's own timeout before it ends the stream
/// itself (the monitor's timer decides; the server's only cleans up).
const SERVER_TIMEOUT_SLACK_SECS: u64 = 5;

/// The longest `timeout` the event stream accepts (a day); a longer monitor timeout is kept by
/// the monitor alone.
const MAX_SERVER_TIMEOUT_SECS: u64 = 86_400;

/// `--properties` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum PropertyKind {
    /// System properties (`properties.system`).
    Sys,
    /// Application properties (`properties.application`).
    App,
    /// Message annotations (`annotations`).
    Anno,
    /// All of them.
    All,
}

/// `hub monitor-events`
#[derive(Debug, Clone, Args)]
pub struct MonitorArgs {
    /// Only this device's events. `*` and `?` are wildcards (e.g. `-d 'sensor-*'`).
    #[arg(long = "device-id", short = 'd')]
    pub device_id: Option<String>,
    /// Only this module's events (`*` and `?` are wildcards).
    #[arg(long = "module-id", short = 'm')]
    pub module_id: Option<String>,
    /// Only events of this Plug and Play interface (e.g. dtmi:com:example:Thermostat;1).
    #[arg(long = "interface", short = 'i')]
    pub interface: Option<String>,
    /// The consumer group to read with.
    #[arg(
        long = "consumer-group",
        visible_alias = "cg",
        short = 'c',
        default_value = "$Default"
    )]
    pub consumer_group: String,
    /// Start at events enqueued at or after this time: Unix epoch milliseconds (as az takes it)
    /// or RFC 3339 (2024-05-01T12:00:00Z) [default: now, only new events].
    #[arg(long = "enqueued-time", visible_alias = "et", short = 'e')]
    pub enqueued_time: Option<String>,
    /// Seconds without an event after which the monitor exits; 0 waits forever.
    #[arg(
        long = "timeout",
        visible_alias = "to",
        short = 't',
        default_value_t = 300
    )]
    pub timeout: u64,
    /// Message properties to print: sys, app, anno or all (space-separated or repeated).
    #[arg(
        long = "properties",
        visible_alias = "props",
        short = 'p',
        value_enum,
        num_args = 0..,
        action = ArgAction::Append,
        ignore_case = true
    )]
    pub properties: Vec<PropertyKind>,
    /// Treat every payload as this content type (application/json parses payloads as JSON).
    #[arg(long = "content-type", visible_alias = "ct")]
    pub content_type: Option<String>,
    /// Exit after this many events.
    #[arg(long = "message-count", visible_alias = "mc")]
    pub message_count: Option<u64>,
    /// Accepted for az compatibility (az uses it to skip installing uamqp); no effect.
    #[arg(long = "yes", short = 'y', hide = true)]
    pub yes: bool,
}

/// Which optional parts an event prints.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Parts {
    pub system: bool,
    pub application: bool,
    pub annotations: bool,
}

impl Parts {
    pub fn from_kinds(kinds: &[PropertyKind]) -> Parts {
        let all = kinds.contains(&PropertyKind::All);
        Parts {
            system: all || kinds.contains(&PropertyKind::Sys),
            application: all || kinds.contains(&PropertyKind::App),
            annotations: all || kinds.contains(&PropertyKind::Anno),
        }
    }

    fn any(self) -> bool {
        self.system || self.application || self.annotations
    }
}

/// One printed event: `{"event": {…}}`, fields in az's order.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MonitorEvent {
    pub event: EventBody,
}

/// The inside of a printed event.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct EventBody {
    pub origin: String,
    pub module: String,
    pub interface: String,
    pub component: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub properties: Option<EventProperties>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub annotations: Option<Map<String, Value>>,
    pub payload: Value,
}

/// `event.properties`
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct EventProperties {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub system: Option<Map<String, Value>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub application: Option<Map<String, Value>>,
}

/// The system property names that AMQP carries in a message's properties section, with
/// uamqp's attribute names; every other system property is a message annotation.
fn amqp_property(name: &str) -> Option<&'static str> {
    Some(match name {
        "message-id" => "message_id",
        "correlation-id" => "correlation_id",
        "user-id" => "user_id",
        "to" => "to",
        "content-type" => "content_type",
        "content-encoding" => "content_encoding",
        "absolute-expiry-time" => "absolute_expiry_time",
        "reply-to" => "reply_to",
        "subject" => "subject",
        "group-id" => "group_id",
        _ => return None,
    })
}

/// Annotations that are AMQP timestamps: uamqp hands them over as Unix milliseconds.
fn is_timestamp(name: &str) -> bool {
    matches!(
        name,
        "iothub-enqueuedtime" | "x-opt-enqueued-time" | "iothub-creation-time-utc"
    )
}

/// RFC 3339 text → Unix milliseconds; anything else is kept as it is.
fn millis(value: &Value) -> Value {
    value
        .as_str()
        .and_then(|s| DateTime::parse_from_rfc3339(s).ok())
        .map_or_else(|| value.clone(), |t| Value::from(t.timestamp_millis()))
}

/// Reshapes one line of the event stream into az's event.
pub fn shape(line: &Value, parts: Parts, content_type: Option<&str>) -> MonitorEvent {
    let empty = Map::new();
    let system_in = line["systemProperties"].as_object().unwrap_or(&empty);
    let mut system = Map::new();
    let mut annotations = Map::new();
    for (name, value) in system_in {
        match amqp_property(name) {
            Some(amqp) if amqp == "absolute_expiry_time" => {
                system.insert(amqp.to_owned(), millis(value));
            }
            Some(amqp) => {
                system.insert(amqp.to_owned(), value.clone());
            }
            None if is_timestamp(name) => {
                annotations.insert(name.clone(), millis(value));
            }
            None => {
                annotations.insert(name.clone(), value.clone());
            }
        }
    }
    let text = |v: Option<&Value>| v.and_then(Value::as_str).unwrap_or_default().to_owned();
    let origin = match annotations.get("iothub-connection-device-id") {
        Some(v) => text(Some(v)),
        None => text(line.get("deviceId")),
    };
    let module = match annotations.get("iothub-connection-module-id") {
        Some(v) => text(Some(v)),
        None => text(line.get("moduleId")),
    };
    let interface = text(
        annotations
            .get("iothub-interface-name")
            .or_else(|| annotations.get("dt-dataschema")),
    );
    let component = text(annotations.get("dt-subject"));

    let content_type = content_type
        .map(str::to_owned)
        .unwrap_or_else(|| text(system.get("content_type")));
    let payload = payload(
        line,
        content_type
            .to_ascii_lowercase()
            .contains("application/json"),
    );

    let properties = parts.any().then(|| EventProperties {
        system: (parts.system && !system.is_empty()).then(|| system.clone()),
        application: parts.application.then(|| {
            line["applicationProperties"]
                .as_object()
                .cloned()
                .unwrap_or_default()
        }),
    });
    MonitorEvent {
        event: EventBody {
            origin,
            module,
            interface,
            component,
            properties,
            annotations: parts.annotations.then_some(annotations),
            payload,
        },
    }
}

/// The payload as az shows it: the body's text (the bytes the device sent, decoded as UTF-8),
/// parsed as JSON when `json` and it parses; [`NON_DECODABLE_PAYLOAD`] when it is not UTF-8.
///
/// The stream carries the exact bytes as `bodyBase64`; a server older than that field sent
/// only `body` (JSON when it parsed, else text, else base64 with `"bodyEncoding": "base64"`).
fn payload(line: &Value, json: bool) -> Value {
    let text = match line.get("bodyBase64").and_then(Value::as_str) {
        Some(b64) => base64::engine::general_purpose::STANDARD
            .decode(b64)
            .ok()
            .and_then(|bytes| String::from_utf8(bytes).ok()),
        None if line["bodyEncoding"] == "base64" => None,
        None => match line.get("body") {
            None => Some(String::new()),
            Some(Value::String(text)) => Some(text.clone()),
            Some(other) => Some(other.to_string()),
        },
    };
    let Some(text) = text else {
        return Value::String(NON_DECODABLE_PAYLOAD.to_owned());
    };
    if json && let Ok(value) = serde_json::from_str::<Value>(&text) {
        return value;
    }
    Value::String(text)
}

/// `--enqueued-time` → the stream's `from`: Unix milliseconds or RFC 3339.
pub fn start_position(enqueued_time: Option<&str>) -> anyhow::Result<String> {
    let Some(text) = enqueued_time.map(str::trim) else {
        return Ok("end".to_owned());
    };
    let time: DateTime<Utc> = if let Ok(ms) = text.parse::<i64>() {
        Utc.timestamp_millis_opt(ms)
            .single()
            .with_context(|| format!("--enqueued-time {text} is out of range"))?
    } else {
        DateTime::parse_from_rfc3339(text)
            .with_context(|| {
                format!(
                    "--enqueued-time '{text}' is neither Unix epoch milliseconds nor an RFC 3339 \
                     time (2024-05-01T12:00:00Z)"
                )
            })?
            .with_timezone(&Utc)
    };
    Ok(format!(
        "time:{}",
        time.to_rfc3339_opts(SecondsFormat::Millis, true)
    ))
}

/// az's id filter: exact, or a pattern where `*` is any run of characters and `?` one.
pub fn id_matches(pattern: &str, id: &str) -> bool {
    fn glob(p: &[char], s: &[char]) -> bool {
        match p.split_first() {
            None => s.is_empty(),
            Some(('*', rest)) => (0..=s.len()).any(|i| glob(rest, &s[i..])),
            Some(('?', rest)) => !s.is_empty() && glob(rest, &s[1..]),
            Some((c, rest)) => s.first() == Some(c) && glob(rest, &s[1..]),
        }
    }
    let p: Vec<char> = pattern.chars().collect();
    let s: Vec<char> = id.chars().collect();
    glob(&p, &s)
}

fn has_wildcard(pattern: &str) -> bool {
    pattern.contains(['*', '?'])
}

/// Whether an event passes `-d`, `-m` and `-i`.
fn wanted(args: &MonitorArgs, event: &EventBody) -> bool {
    args.device_id
        .as_deref()
        .is_none_or(|p| id_matches(p, &event.origin))
        && args
            .module_id
            .as_deref()
            .is_none_or(|p| id_matches(p, &event.module))
        && args
            .interface
            .as_deref()
            .is_none_or(|i| i == event.interface)
}

/// The printed form of one event: az's JSON (indented by four, as az's `json.dumps(indent=4)`)
/// or one line for `--output table`.
pub fn render(event: &MonitorEvent, line: &Value, format: Format) -> anyhow::Result<String> {
    match format {
        Format::Json => {
            let mut out = Vec::new();
            let formatter = serde_json::ser::PrettyFormatter::with_indent(b"    ");
            let mut ser = serde_json::Serializer::with_formatter(&mut out, formatter);
            event.serialize(&mut ser)?;
            out.push(b'\n');
            Ok(String::from_utf8(out)?)
        }
        Format::Table => Ok(table_line(event, line)),
    }
}

/// `<enqueued time>  <origin>[/<module>]  <payload>[  system=…][  application=…][  annotations=…]`
fn table_line(event: &MonitorEvent, line: &Value) -> String {
    let e = &event.event;
    let mut who = e.origin.clone();
    if !e.module.is_empty() {
        who.push('/');
        who.push_str(&e.module);
    }
    let payload = match &e.payload {
        Value::String(s) => s.replace(['\n', '\r'], " "),
        other => other.to_string(),
    };
    let mut out = format!(
        "{}  {who}  {payload}",
        line["enqueuedTime"].as_str().unwrap_or("-")
    );
    if let Some(p) = &e.properties {
        for (name, map) in [("system", &p.system), ("application", &p.application)] {
            if let Some(map) = map {
                out.push_str(&format!("  {name}={}", Value::Object(map.clone())));
            }
        }
    }
    if let Some(a) = &e.annotations {
        out.push_str(&format!("  annotations={}", Value::Object(a.clone())));
    }
    out.push('\n');
    out
}

/// Writes and flushes; false when stdout is gone (a closed pipe), which ends the monitor.
#[allow(clippy::print_stdout)]
fn emit(text: &str) -> anyhow::Result<bool> {
    let mut out = std::io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(false),
        Err(e) => Err(e).context("cannot write to standard output"),
    }
}

/// `hub monitor-events`: streams until `--timeout` seconds pass without an event,
/// `--message-count` events are printed, Ctrl-C, or stdout closes.
pub async fn run(session: &Session, args: &MonitorArgs, format: Format) -> anyhow::Result<()> {
    let from = start_position(args.enqueued_time.as_deref())?;
    let mut query: Vec<(&str, String)> = vec![("from", from)];
    if let Some(d) = args.device_id.as_deref().filter(|d| !has_wildcard(d)) {
        query.push(("deviceId", d.to_owned()));
    }
    let server_timeout = args.timeout.saturating_add(SERVER_TIMEOUT_SLACK_SECS);
    if args.timeout > 0 && server_timeout <= MAX_SERVER_TIMEOUT_SECS {
        query.push(("timeout", server_timeout.to_string()));
    }
    if args.message_count == Some(0) {
        bail!("--message-count must be greater than 0");
    }
    let client = session.client()?;
    let mut stream = client.event_stream(&args.consumer_group, &query).await?;
    // az prints this on stdout; here it goes to stderr, so stdout holds only events. It comes
    // once the hub has opened the reader: events sent from now on will be seen.
    let filter = args
        .device_id
        .as_deref()
        .map(|d| format!(" filtering on device: {d},"))
        .unwrap_or_default();
    eprintln!("Starting event monitor,{filter} use ctrl-c to stop...");

    let parts = Parts::from_kinds(&args.properties);
    let idle = (args.timeout > 0).then(|| Duration::from_secs(args.timeout));
    let mut printed = 0u64;
    let monitor = async {
        loop {
            let next = match idle {
                Some(limit) => match tokio::time::timeout(limit, stream.next_line()).await {
                    Ok(next) => next?,
                    Err(_) => {
                        // Not eprintln!: a reader that closed stderr must not make it panic.
                        let _ = writeln!(
                            std::io::stderr(),
                            "Stopping event monitor: no event for {} s (--timeout; 0 waits forever).",
                            limit.as_secs()
                        );
                        return Ok(());
                    }
                },
                None => stream.next_line().await?,
            };
            let Some(text) = next else {
                bail!("the hub ended the event stream");
            };
            let line: Value = serde_json::from_str(&text)
                .with_context(|| format!("the hub sent an event line that is not JSON: {text}"))?;
            let event = shape(&line, parts, args.content_type.as_deref());
            if !wanted(args, &event.event) {
                continue;
            }
            if !emit(&render(&event, &line, format)?)? {
                return Ok(());
            }
            printed += 1;
            if args.message_count.is_some_and(|n| printed >= n) {
                eprintln!("Successfully parsed {printed} message(s).");
                return Ok(());
            }
        }
    };
    tokio::select! {
        result = monitor => result,
        _ = tokio::signal::ctrl_c() => {
            eprintln!("Stopping event monitor...");
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// A stream line as the server writes it for an SDK message with properties.
    fn sdk_line() -> Value {
        json!({
            "partition": 1, "sequenceNumber": 7, "offset": "7",
            "enqueuedTime": "2024-05-01T12:00:00.123Z",
            "deviceId": "dev1", "moduleId": null,
            "systemProperties": {
                "message-id": "m1", "correlation-id": "c1", "content-type": "application/json",
                "content-encoding": "utf-8", "iothub-connection-device-id": "dev1",
                "iothub-connection-auth-method": "{\"scope\":\"device\"}",
                "iothub-connection-auth-generation-id": "g1",
                "iothub-message-source": "Telemetry",
                "iothub-enqueuedtime": "2024-05-01T12:00:00.123Z",
                "x-opt-sequence-number": 7, "x-opt-offset": "7",
                "x-opt-enqueued-time": "2024-05-01T12:00:00.123Z"
            },
            "applicationProperties": {"alert": "high", "flag": null},
            "body": {"temperature": 21.5},
            "bodyBase64": b64("{\"temperature\":21.5}")
        })
    }

    fn b64(bytes: impl AsRef<[u8]>) -> String {
        base64::engine::general_purpose::STANDARD.encode(bytes)
    }

    #[test]
    fn without_properties_only_the_core_fields_in_az_order() {
        let event = shape(&sdk_line(), Parts::default(), None);
        let text = render(&event, &sdk_line(), Format::Json).unwrap();
        assert_eq!(
            text,
            "{\n    \"event\": {\n        \"origin\": \"dev1\",\n        \"module\": \"\",\n        \
             \"interface\": \"\",\n        \"component\": \"\",\n        \"payload\": {\n            \
             \"temperature\": 21.5\n        }\n    }\n}\n"
        );
    }

    #[test]
    fn all_properties_split_into_amqp_properties_and_annotations() {
        let event = shape(&sdk_line(), Parts::from_kinds(&[PropertyKind::All]), None);
        let v = serde_json::to_value(&event).unwrap();
        let e = &v["event"];
        assert_eq!(
            e["properties"]["system"],
            json!({"message_id": "m1", "correlation_id": "c1",
                   "content_type": "application/json", "content_encoding": "utf-8"})
        );
        assert_eq!(
            e["properties"]["application"],
            json!({"alert": "high", "flag": null})
        );
        let a = &e["annotations"];
        assert_eq!(a["iothub-connection-device-id"], "dev1");
        assert_eq!(a["iothub-message-source"], "Telemetry");
        assert_eq!(a["iothub-enqueuedtime"], 1_714_564_800_123_i64);
        assert_eq!(a["x-opt-enqueued-time"], 1_714_564_800_123_i64);
        assert_eq!(a["x-opt-sequence-number"], 7);
        assert_eq!(a["x-opt-offset"], "7");
        assert!(a.get("message-id").is_none() && a.get("content-type").is_none());
        assert_eq!(e["payload"], json!({"temperature": 21.5}));
    }

    #[test]
    fn each_property_kind_alone() {
        let line = sdk_line();
        let sys = serde_json::to_value(shape(&line, Parts::from_kinds(&[PropertyKind::Sys]), None))
            .unwrap();
        assert!(sys["event"]["properties"]["system"].is_object());
        assert!(sys["event"]["properties"].get("application").is_none());
        assert!(sys["event"].get("annotations").is_none());

        let anno =
            serde_json::to_value(shape(&line, Parts::from_kinds(&[PropertyKind::Anno]), None))
                .unwrap();
        // As az: asking for anything creates `properties`, even when only annotations print.
        assert_eq!(anno["event"]["properties"], json!({}));
        assert!(anno["event"]["annotations"].is_object());

        let app = serde_json::to_value(shape(
            &json!({"deviceId": "d", "systemProperties": {}, "applicationProperties": {}, "body": "x"}),
            Parts::from_kinds(&[PropertyKind::App, PropertyKind::Sys]),
            None,
        ))
        .unwrap();
        // No system properties at all: az leaves `system` out; `application` is always there.
        assert_eq!(app["event"]["properties"], json!({"application": {}}));
    }

    #[test]
    fn payloads_are_json_only_for_json_content() {
        let mut line = sdk_line();
        line["systemProperties"]
            .as_object_mut()
            .unwrap()
            .remove("content-type");
        // No content type: az shows the text.
        let e = shape(&line, Parts::default(), None);
        assert_eq!(e.event.payload, json!("{\"temperature\":21.5}"));
        // --content-type application/json parses it.
        let e = shape(&line, Parts::default(), Some("application/json"));
        assert_eq!(e.event.payload, json!({"temperature": 21.5}));
        // Plain text stays text, JSON content type or not.
        line["body"] = json!("21 degrees");
        line["bodyBase64"] = json!(b64("21 degrees"));
        assert_eq!(
            shape(&line, Parts::default(), Some("application/json"))
                .event
                .payload,
            json!("21 degrees")
        );
        line["body"] = json!("/wD+");
        line["bodyBase64"] = json!("/wD+");
        line["bodyEncoding"] = json!("base64");
        assert_eq!(
            shape(&line, Parts::default(), None).event.payload,
            json!(NON_DECODABLE_PAYLOAD)
        );
    }

    #[test]
    fn undeclared_payloads_are_the_text_as_sent() {
        let mut line = sdk_line();
        line["systemProperties"]
            .as_object_mut()
            .unwrap()
            .remove("content-type");
        let spaced = "{\"a\":  1.50,\n \"n\": 123456789012345678901234567890}";
        line["body"] = json!(spaced);
        line["bodyBase64"] = json!(b64(spaced));
        assert_eq!(
            shape(&line, Parts::default(), None).event.payload,
            json!(spaced)
        );
        // A server without bodyBase64: the old representation still reads.
        let legacy = json!({"deviceId": "d", "systemProperties": {},
            "applicationProperties": {}, "body": "/wD+", "bodyEncoding": "base64"});
        assert_eq!(
            shape(&legacy, Parts::default(), None).event.payload,
            json!(NON_DECODABLE_PAYLOAD)
        );
    }

    #[test]
    fn modules_interfaces_and_components_come_from_annotations() {
        let line = json!({
            "deviceId": "edge1", "moduleId": "temp",
            "systemProperties": {"iothub-connection-device-id": "edge1",
                "iothub-connection-module-id": "temp",
                "dt-dataschema": "dtmi:com:example:Thermostat;1", "dt-subject": "thermostat1"},
            "applicationProperties": {}, "body": 1
        });
        let e = shape(&line, Parts::default(), None).event;
        assert_eq!(e.origin, "edge1");
        assert_eq!(e.module, "temp");
        assert_eq!(e.interface, "dtmi:com:example:Thermostat;1");
        assert_eq!(e.component, "thermostat1");
        assert_eq!(e.payload, json!("1"));
    }

    #[test]
    fn table_lines() {
        let line = sdk_line();
        let e = shape(&line, Parts::from_kinds(&[PropertyKind::App]), None);
        assert_eq!(
            render(&e, &line, Format::Table).unwrap(),
            "2024-05-01T12:00:00.123Z  dev1  {\"temperature\":21.5}  \
             application={\"alert\":\"high\",\"flag\":null}\n"
        );
    }

    #[test]
    fn enqueued_times() {
        assert_eq!(start_position(None).unwrap(), "end");
        assert_eq!(
            start_position(Some("1714564800123")).unwrap(),
            "time:2024-05-01T12:00:00.123Z"
        );
        assert_eq!(
            start_position(Some("2024-05-01T14:00:00+02:00")).unwrap(),
            "time:2024-05-01T12:00:00.000Z"
        );
        assert!(start_position(Some("yesterday")).is_err());
    }

    #[test]
    fn device_patterns() {
        assert!(id_matches("dev1", "dev1"));
        assert!(!id_matches("dev1", "dev10"));
        assert!(id_matches("dev*", "dev10"));
        assert!(id_matches("dev*", "dev"));
        assert!(id_matches("d?v1", "dev1"));
        assert!(!id_matches("d?v1", "dv1"));
        assert!(id_matches("*", ""));
        assert!(!id_matches("*x", "dev1"));
    }
}
