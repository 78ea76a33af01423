//! Link addresses: what node a client attaches to. Clients send a bare path (`$cbs`), a path
//! with a leading slash, or a full URI (`amqps://{host}/{entity}/ConsumerGroups/…`); the C
//! SDKs vary the case, so names are matched case-insensitively.

/// The nodes of the endpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Node {
    /// Claims-based security: `put-token` requests.
    Cbs,
    /// `$management` (alone or under the entity): Event Hubs' READ requests.
    Management,
    /// `{entity}/ConsumerGroups/{group}/Partitions/{partition}`: the hub's entity, or a
    /// custom event stream endpoint of message routing by its name (`stream` is then
    /// `Some(name)`).
    Partition {
        stream: Option<String>,
        group: String,
        partition: String,
    },
    /// `/messages/events`: IoT Hub's own name for the built-in endpoint.
    Events,
    /// `/messages/devicebound`: services send cloud-to-device messages here.
    DeviceBound,
    /// `/messages/serviceBound/feedback`: services receive delivery feedback here.
    Feedback,
    /// `/devices/{id}/…` (or `/devices/{id}/modules/{mid}/…`): a device's or module's own
    /// links.
    Device {
        device_id: String,
        module_id: Option<String>,
        link: DeviceNode,
    },
    /// `/messages/serviceBound/filenotifications`: services receive file upload
    /// notifications here.
    FileNotifications,
    /// `{idScope}/registrations/{registrationId}`: a device's requests to DPS one way, the
    /// answers the other.
    Registration {
        scope: String,
        registration_id: String,
    },
    /// Anything else.
    Unknown,
}

/// The links of a device (Azure docs, "Communicate with your IoT hub by using the AMQP
/// Protocol", device client section).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeviceNode {
    /// `…/messages/events`: the device sends telemetry (a module also receives its input
    /// messages on it, as the Node `ModuleClient` attaches it).
    Events,
    /// `…/messages/devicebound`: the device receives cloud-to-device messages.
    DeviceBound,
    /// `…/twin`: twin requests one way, answers and desired patches the other.
    Twin,
    /// `…/methods/devicebound`: method calls one way, the device's answers the other.
    Methods,
}

/// The path of an address, without scheme, host and slashes at either end.
pub fn path(address: &str) -> &str {
    let rest = match address.split_once("://") {
        Some((_, rest)) => rest.split_once('/').map_or("", |(_, path)| path),
        None => address,
    };
    rest.trim_matches('/')
}

/// Which node `address` names, for the entity `entity`.
pub fn node(address: &str, entity: &str) -> Node {
    let path = path(address);
    let parts: Vec<&str> = path.split('/').collect();
    let is = |part: &str, name: &str| part.eq_ignore_ascii_case(name);
    match parts.as_slice() {
        [cbs] if is(cbs, "$cbs") => Node::Cbs,
        [management] if is(management, "$management") => Node::Management,
        [_, management] if is(management, "$management") => Node::Management,
        [e, groups, group, partitions, partition]
            if !e.is_empty()
                && is(groups, "ConsumerGroups")
                && is(partitions, "Partitions")
                && !group.is_empty() =>
        {
            Node::Partition {
                stream: (!is(e, entity)).then(|| (*e).to_owned()),
                group: (*group).to_owned(),
                partition: (*partition).to_owned(),
            }
        }
        [messages, events] if is(messages, "messages") && is(events, "events") => Node::Events,
        [messages, bound] if is(messages, "messages") && is(bound, "devicebound") => {
            Node::DeviceBound
        }
        [messages, bound, feedback]
            if is(messages, "messages")
                && is(bound, "servicebound")
                && is(feedback, "feedback") =>
        {
            Node::Feedback
        }
        [messages, bound, files]
            if is(messages, "messages")
                && is(bound, "servicebound")
                && is(files, "filenotifications") =>
        {
            Node::FileNotifications
        }
        [scope, registrations, id]
            if is(registrations, "registrations") && !scope.is_empty() && !id.is_empty() =>
        {
            Node::Registration {
                scope: (*scope).to_owned(),
                registration_id: decoded(id),
            }
        }
        [devices, id, modules, mid, rest @ ..]
            if is(devices, "devices")
                && !id.is_empty()
                && is(modules, "modules")
                && !mid.is_empty() =>
        {
            // Modules receive no cloud-to-device messages (IoT Hub has no module queue).
            match device_node(rest) {
                Some(DeviceNode::DeviceBound) | None => Node::Unknown,
                Some(link) => Node::Device {
                    device_id: decoded(id),
                    module_id: Some(decoded(mid)),
                    link,
                },
            }
        }
        [devices, id, rest @ ..] if is(devices, "devices") && !id.is_empty() => {
            match device_node(rest) {
                Some(link) => Node::Device {
                    device_id: decoded(id),
                    module_id: None,
                    link,
                },
                None => Node::Unknown,
            }
        }
        _ => Node::Unknown,
    }
}

/// The link a device's or module's address names after its own path.
fn device_node(rest: &[&str]) -> Option<DeviceNode> {
    let is = |part: &str, name: &str| part.eq_ignore_ascii_case(name);
    Some(match rest {
        [m, e] if is(m, "messages") && is(e, "events") => DeviceNode::Events,
        [m, b] if is(m, "messages") && is(b, "devicebound") => DeviceNode::DeviceBound,
        [t] if is(t, "twin") => DeviceNode::Twin,
        [m, b] if is(m, "methods") && is(b, "devicebound") => DeviceNode::Methods,
        _ => return None,
    })
}

/// A percent-decoded id of an address.
pub(crate) fn decoded(id: &str) -> String {
    percent_encoding::percent_decode_str(id)
        .decode_utf8_lossy()
        .into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nodes() {
        assert_eq!(node("$cbs", "hub"), Node::Cbs);
        assert_eq!(node("$CBS", "hub"), Node::Cbs);
        assert_eq!(node("$management", "hub"), Node::Management);
        assert_eq!(
            node("amqps://h.example/hub/$management", "hub"),
            Node::Management
        );
        assert_eq!(
            node(
                "amqps://h.example:5671/hub/ConsumerGroups/$Default/Partitions/3",
                "hub"
            ),
            Node::Partition {
                stream: None,
                group: "$Default".into(),
                partition: "3".into()
            }
        );
        assert_eq!(
            node("HUB/consumergroups/cg1/partitions/0", "hub"),
            Node::Partition {
                stream: None,
                group: "cg1".into(),
                partition: "0".into()
            }
        );
        assert_eq!(node("/messages/events", "hub"), Node::Events);
        assert_eq!(
            node("amqps://h/messages/deviceBound", "hub"),
            Node::DeviceBound
        );
        assert_eq!(
            node("/messages/servicebound/feedback", "hub"),
            Node::Feedback
        );
        assert_eq!(
            node("/messages/serviceBound/Feedback", "hub"),
            Node::Feedback
        );
        assert_eq!(
            node("other/ConsumerGroups/$Default/Partitions/0", "hub"),
            Node::Partition {
                stream: Some("other".into()),
                group: "$Default".into(),
                partition: "0".into()
            }
        );
        assert_eq!(
            node("hub/ConsumerGroups//Partitions/0", "hub"),
            Node::Unknown
        );
        assert_eq!(node("", "hub"), Node::Unknown);
        assert_eq!(
            node("amqps://h.example/devices/d%231/messages/events", "hub"),
            Node::Device {
                device_id: "d#1".into(),
                module_id: None,
                link: DeviceNode::Events
            }
        );
        assert_eq!(
            node("/devices/d1/twin", "hub"),
            Node::Device {
                device_id: "d1".into(),
                module_id: None,
                link: DeviceNode::Twin
            }
        );
        assert_eq!(
            node("/devices/d1/methods/deviceBound", "hub"),
            Node::Device {
                device_id: "d1".into(),
                module_id: None,
                link: DeviceNode::Methods
            }
        );
        assert_eq!(
            node("/devices/d1/modules/m%2F1/twin", "hub"),
            Node::Device {
                device_id: "d1".into(),
                module_id: Some("m/1".into()),
                link: DeviceNode::Twin
            }
        );
        assert_eq!(
            node("amqps://h/devices/d1/modules/m1/messages/events", "hub"),
            Node::Device {
                device_id: "d1".into(),
                module_id: Some("m1".into()),
                link: DeviceNode::Events
            }
        );
        assert_eq!(
            node("/devices/d1/modules/m1/messages/devicebound", "hub"),
            Node::Unknown
        );
        assert_eq!(node("/devices/d1/modules//twin", "hub"), Node::Unknown);
        assert_eq!(
            node("/messages/serviceBound/fileNotifications", "hub"),
            Node::FileNotifications
        );
        assert_eq!(node("/devices//twin", "hub"), Node::Unknown);
        assert_eq!(
            node("0ne00ABC123/registrations/dev-1", "hub"),
            Node::Registration {
                scope: "0ne00ABC123".into(),
                registration_id: "dev-1".into()
            }
        );
        assert_eq!(
            node(
                "amqps://dps.example/0ne00ABC123/Registrations/dev%3A1",
                "hub"
            ),
            Node::Registration {
                scope: "0ne00ABC123".into(),
                registration_id: "dev:1".into()
            }
        );
        assert_eq!(node("0ne00ABC123/registrations/", "hub"), Node::Unknown);
        assert_eq!(node("/registrations/dev-1", "hub"), Node::Unknown);
        assert_eq!(
            node("0ne00ABC123/registrations/dev-1/operations", "hub"),
            Node::Unknown
        );
        assert_eq!(path("amqps://h.example/"), "");
    }
}
