//! IoT Hub's MQTT topics: what a device may publish and subscribe to, and the URL-encoded
//! property bags that carry message properties.

use ironhub_hub::{Annotations, SystemProperties, Telemetry};
use percent_encoding::{
    AsciiSet, CONTROLS, NON_ALPHANUMERIC, percent_decode_str, utf8_percent_encode,
};

/// What a device may subscribe to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Feature {
    /// `devices/{id}/messages/devicebound/#`
    CloudToDevice,
    /// `$iothub/methods/POST/#`
    Methods,
    /// `$iothub/twin/PATCH/properties/desired/#`
    DesiredPatches,
    /// `$iothub/twin/res/#`
    TwinResponses,
    /// `devices/{d}/modules/{m}/inputs/#`
    ModuleInputs,
    /// `$iothub/credentials/res/#`
    CredentialResponses,
}

impl Feature {
    /// The name a persisted session stores.
    pub fn name(self) -> &'static str {
        match self {
            Feature::CloudToDevice => "c2d",
            Feature::Methods => "methods",
            Feature::DesiredPatches => "desired",
            Feature::TwinResponses => "twin-res",
            Feature::ModuleInputs => "inputs",
            Feature::CredentialResponses => "credentials-res",
        }
    }

    /// The feature a stored name stands for.
    pub fn from_name(name: &str) -> Option<Feature> {
        [
            Feature::CloudToDevice,
            Feature::Methods,
            Feature::DesiredPatches,
            Feature::TwinResponses,
            Feature::ModuleInputs,
            Feature::CredentialResponses,
        ]
        .into_iter()
        .find(|f| f.name() == name)
    }
}

/// The feature a SUBSCRIBE filter asks for, or `None` for a filter IoT Hub refuses.
pub fn subscription(filter: &str, device_id: &str, module_id: Option<&str>) -> Option<Feature> {
    let wildcard_under = |prefix: &str| {
        filter
            .strip_prefix(prefix)
            .is_some_and(|rest| rest == "#" || rest.is_empty())
    };
    let own = match module_id {
        Some(m) => format!("devices/{device_id}/modules/{m}/"),
        None => format!("devices/{device_id}/"),
    };
    if wildcard_under(&format!("{own}messages/devicebound/")) {
        Some(Feature::CloudToDevice)
    } else if module_id.is_some() && wildcard_under(&format!("{own}inputs/")) {
        Some(Feature::ModuleInputs)
    } else if wildcard_under("$iothub/methods/POST/") {
        Some(Feature::Methods)
    } else if wildcard_under("$iothub/twin/PATCH/properties/desired/") {
        Some(Feature::DesiredPatches)
    } else if wildcard_under("$iothub/twin/res/") {
        Some(Feature::TwinResponses)
    } else if module_id.is_none() && wildcard_under("$iothub/credentials/res/") {
        Some(Feature::CredentialResponses)
    } else {
        None
    }
}

/// What a device published.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Inbound {
    /// `devices/{id}[/modules/{m}]/messages/events[/{property bag}]`
    Telemetry {
        properties: Vec<(String, Option<String>)>,
    },
    /// `$iothub/twin/GET/?$rid={rid}`
    TwinGet { rid: String },
    /// `$iothub/twin/PATCH/properties/reported/?$rid={rid}`
    TwinPatchReported { rid: String },
    /// `$iothub/methods/res/{status}/?$rid={rid}`
    MethodResponse { status: i32, rid: String },
    /// `$iothub/credentials/POST/issueCertificate/?$rid={rid}` (a device, not a module)
    IssueCertificate { rid: String },
    /// Anything else: IoT Hub closes the connection.
    Unsupported,
}

/// Whether a PUBLISH (or Will) topic is a topic name at all: MQTT 3.1.1 forbids the wildcards
/// `+` and `#` in one [MQTT-3.3.2-2] and U+0000 in any string [MQTT-1.5.3-2]. Clients encode
/// them in property bags (`%2B`, `%23`); a raw one makes the packet malformed.
pub fn is_valid_topic_name(topic: &str) -> bool {
    !topic.is_empty() && !topic.contains(['+', '#', '\0'])
}

/// Classifies a PUBLISH topic of the device `device_id` (and module `module_id`).
pub fn inbound(topic: &str, device_id: &str, module_id: Option<&str>) -> Inbound {
    let own = match module_id {
        Some(m) => format!("devices/{device_id}/modules/{m}/messages/events"),
        None => format!("devices/{device_id}/messages/events"),
    };
    if let Some(rest) = topic.strip_prefix(&own) {
        if rest.is_empty() {
            return Inbound::Telemetry { properties: vec![] };
        }
        if let Some(bag) = rest.strip_prefix('/') {
            return Inbound::Telemetry {
                properties: decode_property_bag(bag),
            };
        }
        return Inbound::Unsupported;
    }
    let (path, query) = topic.split_once('?').unwrap_or((topic, ""));
    let rid = || query_param(query, "$rid");
    match path {
        "$iothub/twin/GET/" => rid().map_or(Inbound::Unsupported, |rid| Inbound::TwinGet { rid }),
        "$iothub/twin/PATCH/properties/reported/" => rid().map_or(Inbound::Unsupported, |rid| {
            Inbound::TwinPatchReported { rid }
        }),
        "$iothub/credentials/POST/issueCertificate/" if module_id.is_none() => rid()
            .map_or(Inbound::Unsupported, |rid| Inbound::IssueCertificate {
                rid,
            }),
        _ => {
            let status = path
                .strip_prefix("$iothub/methods/res/")
                .and_then(|s| s.strip_suffix('/'))
                .and_then(|s| s.parse::<i32>().ok());
            match (status, rid()) {
                (Some(status), Some(rid)) => Inbound::MethodResponse { status, rid },
                _ => Inbound::Unsupported,
            }
        }
    }
}

fn query_param(query: &str, name: &str) -> Option<String> {
    decode_property_bag(query)
        .into_iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.unwrap_or_default())
}

/// Percent-decodes one part of a topic or username (invalid UTF-8 becomes U+FFFD; `+` stays).
pub(crate) fn percent_decode(s: &str) -> String {
    percent_decode_str(s).decode_utf8_lossy().into_owned()
}

/// Decodes `k1=v1&k2&k3=` into pairs: a key without `=` has no value, `k=` an empty one.
/// Percent-decoding leaves `+` alone.
pub fn decode_property_bag(bag: &str) -> Vec<(String, Option<String>)> {
    let decode = percent_decode;
    bag.split('&')
        .filter(|p| !p.is_empty())
        .map(|pair| match pair.split_once('=') {
            Some((k, v)) => (decode(k), Some(decode(v))),
            None => (decode(pair), None),
        })
        .collect()
}

/// A telemetry message from its property bag: the `$.xx` keys IoT Hub's MQTT devices use for
/// system properties (Azure docs, "Communicate with an IoT hub using the MQTT protocol",
/// section "Sending device-to-cloud messages"; `$.ctime` and `$.sub` as the Azure SDK for C
/// names them) become [`SystemProperties`], a key without `=` an empty value; every other
/// pair is an application property. The hub's rules are applied by the hub.
pub fn telemetry(
    properties: Vec<(String, Option<String>)>,
    body: Vec<u8>,
    annotations: Annotations,
) -> Telemetry {
    let mut system = SystemProperties::default();
    let mut application = Vec::new();
    for (key, value) in properties {
        let field = match key.as_str() {
            "$.mid" => &mut system.message_id,
            "$.cid" => &mut system.correlation_id,
            "$.uid" => &mut system.user_id,
            "$.ct" => &mut system.content_type,
            "$.ce" => &mut system.content_encoding,
            "$.exp" => &mut system.expiry,
            "$.to" => &mut system.to,
            "$.ctime" => &mut system.creation_time,
            "$.on" => &mut system.output_name,
            "$.ifid" => &mut system.interface_id,
            "$.sub" => &mut system.component,
            "$.schema" => &mut system.data_schema,
            _ => {
                application.push((key, value));
                continue;
            }
        };
        *field = Some(value.unwrap_or_default());
    }
    Telemetry {
        system,
        application,
        body,
        annotations,
    }
}

/// Everything but unreserved characters is encoded, `/` included, with upper-case hex
/// (Tasmota searches for `%2F`).
const BAG: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// Encodes pairs as a property bag, in the order given.
pub fn encode_property_bag<'a>(
    pairs: impl IntoIterator<Item = (&'a str, Option<&'a str>)>,
) -> String {
    pairs
        .into_iter()
        .map(|(k, v)| {
            let k = utf8_percent_encode(k, BAG).to_string();
            match v {
                Some(v) => format!("{k}={}", utf8_percent_encode(v, BAG)),
                None => k,
            }
        })
        .collect::<Vec<_>>()
        .join("&")
}

/// `$iothub/twin/res/{status}/?$rid={rid}[&$version={v}]`
pub fn twin_response(status: u16, rid: &str, version: Option<u64>) -> String {
    let rid = utf8_percent_encode(rid, BAG);
    match version {
        Some(v) => format!("$iothub/twin/res/{status}/?$rid={rid}&$version={v}"),
        None => format!("$iothub/twin/res/{status}/?$rid={rid}"),
    }
}

/// `$iothub/credentials/res/{status}/?$rid={rid}`
pub fn credentials_response(status: u16, rid: &str) -> String {
    format!(
        "$iothub/credentials/res/{status}/?$rid={}",
        utf8_percent_encode(rid, BAG)
    )
}

/// `$iothub/twin/PATCH/properties/desired/?$version={v}`
pub fn desired_patch(version: u64) -> String {
    format!("$iothub/twin/PATCH/properties/desired/?$version={version}")
}

/// What a method name's topic level escapes: only what would end or break the level. The
/// name is otherwise sent as it is, as IoT Hub sends it: the Node SDK matches the level
/// verbatim, and a Plug and Play component's command is `{component}*{command}`.
const METHOD_NAME: &AsciiSet = &CONTROLS
    .add(b' ')
    .add(b'/')
    .add(b'?')
    .add(b'#')
    .add(b'+')
    .add(b'%');

/// `$iothub/methods/POST/{name}/?$rid={rid}`
pub fn method_request(name: &str, rid: &str) -> String {
    format!(
        "$iothub/methods/POST/{}/?$rid={}",
        utf8_percent_encode(name, METHOD_NAME),
        utf8_percent_encode(rid, BAG)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn some(s: &str) -> Option<String> {
        Some(s.to_owned())
    }

    #[test]
    fn credentials_topics_are_a_device_s() {
        assert_eq!(
            inbound(
                "$iothub/credentials/POST/issueCertificate/?$rid=ab-12",
                "d",
                None
            ),
            Inbound::IssueCertificate {
                rid: "ab-12".into()
            }
        );
        for refused in [
            inbound("$iothub/credentials/POST/issueCertificate/", "d", None),
            inbound(
                "$iothub/credentials/POST/issueCertificate/?$rid=1",
                "d",
                Some("m"),
            ),
        ] {
            assert_eq!(refused, Inbound::Unsupported);
        }
        assert_eq!(
            subscription("$iothub/credentials/res/#", "d", None),
            Some(Feature::CredentialResponses)
        );
        assert_eq!(
            subscription("$iothub/credentials/res/#", "d", Some("m")),
            None
        );
        assert_eq!(
            credentials_response(202, "a b"),
            "$iothub/credentials/res/202/?$rid=a%20b"
        );
        assert_eq!(
            Feature::from_name(Feature::CredentialResponses.name()),
            Some(Feature::CredentialResponses)
        );
    }

    #[test]
    fn wildcards_and_nul_are_not_topic_names() {
        assert!(is_valid_topic_name("devices/d/messages/events/a=%2B%23"));
        for bad in [
            "",
            "devices/d/messages/events/+",
            "devices/d/messages/events/#",
            "devices/d/messages/events/a=b+c",
            "devices/d/messages/events/\0",
        ] {
            assert!(!is_valid_topic_name(bad), "{bad:?}");
        }
    }

    #[test]
    fn telemetry_topics_and_bags() {
        let t = "devices/dev1/messages/events/%24.mid=id1&%24.ct=application%2Fjson&%24.ce=utf-8&k=v%20w";
        assert_eq!(
            inbound(t, "dev1", None),
            Inbound::Telemetry {
                properties: vec![
                    ("$.mid".into(), some("id1")),
                    ("$.ct".into(), some("application/json")),
                    ("$.ce".into(), some("utf-8")),
                    ("k".into(), some("v w")),
                ]
            }
        );
        assert_eq!(
            inbound("devices/dev1/messages/events", "dev1", None),
            Inbound::Telemetry { properties: vec![] }
        );
        assert_eq!(
            inbound(
                "devices/dev1/messages/events/a+b=c+d&flag&empty=",
                "dev1",
                None
            ),
            Inbound::Telemetry {
                properties: vec![
                    ("a+b".into(), some("c+d")),
                    ("flag".into(), None),
                    ("empty".into(), some("")),
                ]
            }
        );
        assert_eq!(
            inbound("devices/other/messages/events/", "dev1", None),
            Inbound::Unsupported
        );
        assert_eq!(
            inbound("devices/dev1/messages/eventsX", "dev1", None),
            Inbound::Unsupported
        );
        assert_eq!(inbound("tele/x/STATE", "dev1", None), Inbound::Unsupported);
        assert!(matches!(
            inbound("devices/d/modules/m/messages/events/", "d", Some("m")),
            Inbound::Telemetry { .. }
        ));
    }

    #[test]
    fn property_bags_become_typed_messages() {
        let bag = decode_property_bag(
            "%24.mid=m1&%24.ct=application%2Fjson&%24.uid&%24.ctime=2026-12-06T10%3A00%3A00Z&%24.sub=thermostat1&%24.cdid=spoof&k=v&flag",
        );
        let message = telemetry(bag, b"{}".to_vec(), Annotations::default());
        assert_eq!(
            message.system,
            SystemProperties {
                message_id: some("m1"),
                content_type: some("application/json"),
                user_id: some(""),
                creation_time: some("2026-12-06T10:00:00Z"),
                component: some("thermostat1"),
                ..SystemProperties::default()
            }
        );
        // Unknown `$.` keys stay the device's own (application) properties.
        assert_eq!(
            message.application,
            [
                ("$.cdid".to_owned(), some("spoof")),
                ("k".to_owned(), some("v")),
                ("flag".to_owned(), None),
            ]
        );
        assert_eq!(message.body, b"{}");
    }

    #[test]
    fn request_topics() {
        assert_eq!(
            inbound("$iothub/twin/GET/?$rid=76c5", "d", None),
            Inbound::TwinGet { rid: "76c5".into() }
        );
        assert_eq!(
            inbound(
                "$iothub/twin/PATCH/properties/reported/?$rid=1&$version=3",
                "d",
                None
            ),
            Inbound::TwinPatchReported { rid: "1".into() }
        );
        assert_eq!(
            inbound("$iothub/methods/res/200/?$rid=9", "d", None),
            Inbound::MethodResponse {
                status: 200,
                rid: "9".into()
            }
        );
        assert_eq!(
            inbound("$iothub/twin/GET/", "d", None),
            Inbound::Unsupported
        );
        assert_eq!(
            inbound("$iothub/methods/res/abc/?$rid=1", "d", None),
            Inbound::Unsupported
        );
    }

    #[test]
    fn subscriptions() {
        assert_eq!(
            subscription("devices/d1/messages/devicebound/#", "d1", None),
            Some(Feature::CloudToDevice)
        );
        assert_eq!(
            subscription("devices/d2/messages/devicebound/#", "d1", None),
            None
        );
        assert_eq!(
            subscription("$iothub/methods/POST/#", "d1", None),
            Some(Feature::Methods)
        );
        assert_eq!(
            subscription("$iothub/twin/PATCH/properties/desired/#", "d1", None),
            Some(Feature::DesiredPatches)
        );
        assert_eq!(
            subscription("$iothub/twin/res/#", "d1", None),
            Some(Feature::TwinResponses)
        );
        assert_eq!(subscription("#", "d1", None), None);
        assert_eq!(subscription("cmnd/x/#", "d1", None), None);
        assert_eq!(
            subscription("devices/d/modules/m/inputs/#", "d", Some("m")),
            Some(Feature::ModuleInputs)
        );
        for f in [
            Feature::CloudToDevice,
            Feature::Methods,
            Feature::TwinResponses,
        ] {
            assert_eq!(Feature::from_name(f.name()), Some(f));
        }
    }

    #[test]
    fn encoding_is_upper_case_and_keeps_order() {
        let bag = encode_property_bag([
            ("$.mid", Some("m 1")),
            ("$.to", Some("/devices/dev1/messages/deviceBound")),
            ("flag", None),
            ("topic", Some("cmnd/X/POWER")),
        ]);
        assert_eq!(
            bag,
            "%24.mid=m%201&%24.to=%2Fdevices%2Fdev1%2Fmessages%2FdeviceBound&flag&topic=cmnd%2FX%2FPOWER"
        );
        assert_eq!(
            twin_response(204, "a b", Some(2)),
            "$iothub/twin/res/204/?$rid=a%20b&$version=2"
        );
        assert_eq!(
            method_request("reboot", "1"),
            "$iothub/methods/POST/reboot/?$rid=1"
        );
        assert_eq!(
            method_request("thermostat1*getMaxMinReport", "2"),
            "$iothub/methods/POST/thermostat1*getMaxMinReport/?$rid=2"
        );
        assert_eq!(
            desired_patch(3),
            "$iothub/twin/PATCH/properties/desired/?$version=3"
        );
    }
}
