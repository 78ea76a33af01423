//! IoT Hub's MQTT topic grammar (`ironhub_mqtt::topics`): any topic or filter is classified
//! without a panic; a property bag decodes, encodes and decodes to the same pairs; a telemetry
//! topic built from pairs gives those pairs back; twin and method response topics give back
//! their request id and status; and the bag's pairs land in the telemetry message as system or
//! application properties.
#![no_main]

use ironhub_hub::Annotations;
use ironhub_mqtt::topics::{
    Inbound, decode_property_bag, encode_property_bag, inbound, is_valid_topic_name, subscription,
    telemetry,
};
use libfuzzer_sys::fuzz_target;

/// The property bag keys of system properties (Azure docs, "Communicate with an IoT hub using
/// the MQTT protocol"; `$.ctime` and `$.sub` as the Azure SDK for C names them).
const SYSTEM: [&str; 12] = [
    "$.mid", "$.cid", "$.uid", "$.ct", "$.ce", "$.exp", "$.to", "$.ctime", "$.on", "$.ifid",
    "$.sub", "$.schema",
];

fn encode(pairs: &[(String, Option<String>)]) -> String {
    encode_property_bag(pairs.iter().map(|(k, v)| (k.as_str(), v.as_deref())))
}

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    // The first byte picks the identity: a device, or a module.
    let module = data.first().is_some_and(|b| b & 1 == 1).then_some("mod-1");
    let device = "dev-1";

    // Anything as a PUBLISH topic and as a SUBSCRIBE filter.
    let _ = is_valid_topic_name(&text);
    let _ = subscription(&text, device, module);
    let classified = inbound(&text, device, module);
    if let Inbound::Telemetry { properties } = &classified {
        let own = match module {
            Some(m) => format!("devices/{device}/modules/{m}/messages/events"),
            None => format!("devices/{device}/messages/events"),
        };
        let rest = text
            .strip_prefix(own.as_str())
            .expect("telemetry is on the own topic");
        let bag = rest.strip_prefix('/').unwrap_or(rest);
        assert_eq!(properties, &decode_property_bag(bag));
    }

    // The text as a property bag: decoded pairs survive encode and decode.
    let pairs = decode_property_bag(&text);
    let bag = encode(&pairs);
    assert_eq!(decode_property_bag(&bag), pairs, "bag {bag:?}");

    // The pairs on a telemetry topic come back as they went.
    let own = match module {
        Some(m) => format!("devices/{device}/modules/{m}/messages/events/{bag}"),
        None => format!("devices/{device}/messages/events/{bag}"),
    };
    assert!(is_valid_topic_name(&own), "{own:?}");
    assert_eq!(
        inbound(&own, device, module),
        Inbound::Telemetry {
            properties: pairs.clone()
        }
    );

    // Every pair is a system or an application property of the message: the `$.` keys IoT
    // Hub's MQTT devices use are system properties (the last one given wins), the others
    // application properties, in order.
    let message = telemetry(pairs.clone(), data.to_vec(), Annotations::default());
    let application: Vec<_> = pairs
        .iter()
        .filter(|(k, _)| !SYSTEM.contains(&k.as_str()))
        .cloned()
        .collect();
    assert_eq!(message.application, application);
    let last = |key: &str| {
        pairs
            .iter()
            .rev()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.clone().unwrap_or_default())
    };
    assert_eq!(message.system.message_id, last("$.mid"));
    assert_eq!(message.system.correlation_id, last("$.cid"));
    assert_eq!(message.system.content_type, last("$.ct"));
    assert_eq!(message.system.content_encoding, last("$.ce"));
    assert_eq!(message.body, data);

    // A request id and a status on the response topics come back as sent.
    let rid = text.as_ref();
    let rid_bag = encode_property_bag([("$rid", Some(rid))]);
    assert_eq!(
        inbound(&format!("$iothub/twin/GET/?{rid_bag}"), device, module),
        Inbound::TwinGet {
            rid: rid.to_owned()
        }
    );
    assert_eq!(
        inbound(
            &format!("$iothub/twin/PATCH/properties/reported/?{rid_bag}"),
            device,
            module
        ),
        Inbound::TwinPatchReported {
            rid: rid.to_owned()
        }
    );
    let status = data
        .get(1..5)
        .map_or(200, |b| i32::from_le_bytes([b[0], b[1], b[2], b[3]]));
    assert_eq!(
        inbound(
            &format!("$iothub/methods/res/{status}/?{rid_bag}"),
            device,
            module
        ),
        Inbound::MethodResponse {
            status,
            rid: rid.to_owned()
        }
    );
});
