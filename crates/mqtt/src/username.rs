//! The MQTT username of an IoT Hub device: `{host}/{deviceId}[/{moduleId}][/[?]{query}]`.
//!
//! Real devices send every variation (see `docs/protocol/hub-mqtt.md`, "CONNECT username"):
//! with and without
//! `?api-version=…`, without the `?`, with unencoded `:` and `;` in `model-id`. Nothing after
//! the ids is required.

use crate::topics::percent_decode as decode;

/// A parsed username.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Username {
    pub host: String,
    pub device_id: String,
    pub module_id: Option<String>,
    /// Query parameters, percent-decoded, in order.
    pub params: Vec<(String, String)>,
}

impl Username {
    /// Parses a username. Returns `None` when it has no device id.
    pub fn parse(text: &str) -> Option<Username> {
        let (host, rest) = text.split_once('/')?;
        let (path, query) = match rest.split_once('?') {
            Some((p, q)) => (p, q),
            None => (rest, ""),
        };
        let mut segments = path.split('/');
        let device_id = segments.next().filter(|s| !s.is_empty())?.to_owned();
        let mut module_id = None;
        let mut query_parts: Vec<&str> = Vec::new();
        for (i, seg) in segments.enumerate() {
            if seg.is_empty() {
                continue;
            }
            if seg.contains('=') {
                // "api-version=2019-03-31" without a '?': the rest is the query.
                query_parts.push(seg);
            } else if i == 0 && module_id.is_none() {
                module_id = Some(seg.to_owned());
            }
        }
        if !query.is_empty() {
            query_parts.push(query);
        }
        let params = query_parts
            .iter()
            .flat_map(|q| q.split('&'))
            .filter(|p| !p.is_empty())
            .map(|p| {
                let (k, v) = p.split_once('=').unwrap_or((p, ""));
                (decode(k), decode(v))
            })
            .collect();
        Some(Username {
            host: host.to_owned(),
            device_id,
            module_id,
            params,
        })
    }

    /// A query parameter, by case-insensitive name.
    pub fn param(&self, name: &str) -> Option<&str> {
        self.params
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> Username {
        Username::parse(s).unwrap_or_else(|| panic!("{s} should parse"))
    }

    #[test]
    fn every_client_shape() {
        let py = parse(
            "myhub.example/dev1/?api-version=2019-10-01&DeviceClientType=azure-iot-device-iothub-py%2F2.14.0%28x%29",
        );
        assert_eq!(
            (py.host.as_str(), py.device_id.as_str()),
            ("myhub.example", "dev1")
        );
        assert_eq!(py.param("api-version"), Some("2019-10-01"));
        assert_eq!(
            py.param("DeviceClientType"),
            Some("azure-iot-device-iothub-py/2.14.0(x)")
        );
        assert_eq!(py.module_id, None);

        let tasmota = parse("myhub.example/AABBCC");
        assert_eq!(tasmota.device_id, "AABBCC");
        assert!(tasmota.params.is_empty());

        let bridge = parse("myhub.example/te1/api-version=2019-03-31");
        assert_eq!(bridge.device_id, "te1");
        assert_eq!(bridge.module_id, None);
        assert_eq!(bridge.param("api-version"), Some("2019-03-31"));

        let pnp =
            parse("h/d/?api-version=2020-05-31-preview&model-id=dtmi:com:example:Thermostat;1");
        assert_eq!(pnp.param("model-id"), Some("dtmi:com:example:Thermostat;1"));
        let pnp_encoded =
            parse("h/d/?api-version=2020-09-30&model-id=dtmi%3Acom%3Aexample%3AThermostat%3B1");
        assert_eq!(
            pnp_encoded.param("model-id"),
            Some("dtmi:com:example:Thermostat;1")
        );

        let module = parse("h/d1/m1/?api-version=2021-04-12");
        assert_eq!(
            (module.device_id.as_str(), module.module_id.as_deref()),
            ("d1", Some("m1"))
        );

        assert!(Username::parse("justahost").is_none());
        assert!(Username::parse("host/").is_none());
        assert_eq!(parse("h/d/").device_id, "d");
    }
}
