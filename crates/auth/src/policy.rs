//! Shared access policies and their rights, named as IoT Hub and DPS name them.

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::keys::generate_key;

/// A set of rights. Serialised the way Azure writes them: `"RegistryRead, RegistryWrite"`.
#[derive(Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct Rights(u16);

impl Rights {
    pub const REGISTRY_READ: Rights = Rights(1);
    pub const REGISTRY_WRITE: Rights = Rights(1 << 1);
    pub const SERVICE_CONNECT: Rights = Rights(1 << 2);
    pub const DEVICE_CONNECT: Rights = Rights(1 << 3);
    pub const SERVICE_CONFIG: Rights = Rights(1 << 4);
    pub const ENROLLMENT_READ: Rights = Rights(1 << 5);
    pub const ENROLLMENT_WRITE: Rights = Rights(1 << 6);
    pub const REGISTRATION_STATUS_READ: Rights = Rights(1 << 7);
    pub const REGISTRATION_STATUS_WRITE: Rights = Rights(1 << 8);

    const NAMES: [(Rights, &'static str); 9] = [
        (Self::REGISTRY_READ, "RegistryRead"),
        (Self::REGISTRY_WRITE, "RegistryWrite"),
        (Self::SERVICE_CONNECT, "ServiceConnect"),
        (Self::DEVICE_CONNECT, "DeviceConnect"),
        (Self::SERVICE_CONFIG, "ServiceConfig"),
        (Self::ENROLLMENT_READ, "EnrollmentRead"),
        (Self::ENROLLMENT_WRITE, "EnrollmentWrite"),
        (Self::REGISTRATION_STATUS_READ, "RegistrationStatusRead"),
        (Self::REGISTRATION_STATUS_WRITE, "RegistrationStatusWrite"),
    ];

    /// True when every right in `other` is in `self`.
    pub fn contains(self, other: Rights) -> bool {
        self.0 & other.0 == other.0
    }

    /// Parses `"RegistryRead, ServiceConnect"` (any case, `,` or `|` separated).
    pub fn parse(text: &str) -> Result<Rights, String> {
        let mut rights = Rights::default();
        for name in text
            .split([',', '|'])
            .map(str::trim)
            .filter(|s| !s.is_empty())
        {
            let (r, _) = Self::NAMES
                .iter()
                .find(|(_, n)| n.eq_ignore_ascii_case(name))
                .ok_or_else(|| format!("unknown right '{name}'"))?;
            rights = rights | *r;
        }
        Ok(rights)
    }
}

impl std::ops::BitOr for Rights {
    type Output = Rights;
    fn bitor(self, rhs: Rights) -> Rights {
        Rights(self.0 | rhs.0)
    }
}

impl std::fmt::Display for Rights {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let names: Vec<&str> = Self::NAMES
            .iter()
            .filter(|(r, _)| self.contains(*r))
            .map(|(_, n)| *n)
            .collect();
        f.write_str(&names.join(", "))
    }
}

impl std::fmt::Debug for Rights {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Rights({self})")
    }
}

impl Serialize for Rights {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Rights {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        Rights::parse(&text).map_err(serde::de::Error::custom)
    }
}

/// A shared access policy: a named pair of keys with rights.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SharedAccessPolicy {
    pub key_name: String,
    pub primary_key: String,
    pub secondary_key: String,
    pub rights: Rights,
}

impl std::fmt::Debug for SharedAccessPolicy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Keys are secrets: never in logs.
        f.debug_struct("SharedAccessPolicy")
            .field("key_name", &self.key_name)
            .field("rights", &self.rights)
            .finish_non_exhaustive()
    }
}

impl SharedAccessPolicy {
    /// A policy with freshly generated keys.
    pub fn generate(key_name: &str, rights: Rights) -> Self {
        Self {
            key_name: key_name.to_owned(),
            primary_key: generate_key(64),
            secondary_key: generate_key(64),
            rights,
        }
    }

    /// The policy's two keys, primary first.
    pub fn keys(&self) -> [&str; 2] {
        [&self.primary_key, &self.secondary_key]
    }
}

/// The five policies every IoT Hub starts with.
pub fn default_hub_policies() -> Vec<SharedAccessPolicy> {
    use Rights as R;
    vec![
        SharedAccessPolicy::generate(
            "iothubowner",
            R::REGISTRY_READ | R::REGISTRY_WRITE | R::SERVICE_CONNECT | R::DEVICE_CONNECT,
        ),
        SharedAccessPolicy::generate("service", R::SERVICE_CONNECT),
        SharedAccessPolicy::generate("device", R::DEVICE_CONNECT),
        SharedAccessPolicy::generate("registryRead", R::REGISTRY_READ),
        SharedAccessPolicy::generate("registryReadWrite", R::REGISTRY_READ | R::REGISTRY_WRITE),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_policies_have_iot_hub_rights() {
        let p = default_hub_policies();
        let names: Vec<_> = p.iter().map(|p| p.key_name.as_str()).collect();
        assert_eq!(
            names,
            [
                "iothubowner",
                "service",
                "device",
                "registryRead",
                "registryReadWrite"
            ]
        );
        assert_eq!(
            p[0].rights.to_string(),
            "RegistryRead, RegistryWrite, ServiceConnect, DeviceConnect"
        );
        assert!(!p[3].rights.contains(Rights::REGISTRY_WRITE));
        assert!(
            p[4].rights
                .contains(Rights::REGISTRY_READ | Rights::REGISTRY_WRITE)
        );
        assert!(!p[1].rights.contains(Rights::REGISTRY_READ));
        // 64 random bytes, base64, different for every key.
        assert_eq!(p[0].primary_key.len(), 88);
        assert_ne!(p[0].primary_key, p[0].secondary_key);
        assert_ne!(p[0].primary_key, p[1].primary_key);
    }

    #[test]
    fn rights_round_trip_through_json() {
        let r = Rights::REGISTRY_READ | Rights::DEVICE_CONNECT;
        let json = serde_json_like(&r.to_string());
        assert_eq!(Rights::parse(&json).unwrap(), r);
        assert_eq!(Rights::parse("registryread|DEVICECONNECT").unwrap(), r);
        assert!(Rights::parse("Everything").is_err());
    }

    fn serde_json_like(s: &str) -> String {
        s.to_owned()
    }

    #[test]
    fn debug_hides_keys() {
        let p = SharedAccessPolicy::generate("x", Rights::REGISTRY_READ);
        assert!(!format!("{p:?}").contains(&p.primary_key));
    }
}
