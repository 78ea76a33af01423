//! Azure's built-in data-plane roles of IoT Hub and DPS and the data actions each grants
//! (Azure docs, "Control access to IoT Hub by using Microsoft Entra ID" and "Control access
//! to DPS with Azure AD", built-in roles). A role grants a data action when one of its
//! patterns matches it; `*` stands for any run of characters, as in Azure role definitions.

/// A built-in role: its name and the data-action patterns it grants.
struct Role {
    name: &'static str,
    data_actions: &'static [&'static str],
}

const ROLES: &[Role] = &[
    Role {
        name: "IoT Hub Data Contributor",
        data_actions: &["Microsoft.Devices/IotHubs/*"],
    },
    Role {
        name: "IoT Hub Data Reader",
        data_actions: &["Microsoft.Devices/IotHubs/*/read"],
    },
    Role {
        name: "IoT Hub Registry Contributor",
        data_actions: &["Microsoft.Devices/IotHubs/devices/*"],
    },
    Role {
        name: "IoT Hub Twin Contributor",
        data_actions: &["Microsoft.Devices/IotHubs/twins/*"],
    },
    Role {
        name: "Device Provisioning Service Data Contributor",
        data_actions: &["Microsoft.Devices/provisioningServices/*"],
    },
    Role {
        name: "Device Provisioning Service Data Reader",
        data_actions: &["Microsoft.Devices/provisioningServices/*/read"],
    },
];

/// Whether `name` is a built-in role (names compare ignoring case).
pub fn is_role(name: &str) -> bool {
    ROLES.iter().any(|r| r.name.eq_ignore_ascii_case(name))
}

/// The names of the built-in roles.
pub fn role_names() -> impl Iterator<Item = &'static str> {
    ROLES.iter().map(|r| r.name)
}

/// Whether the role `name` grants `data_action` (data actions compare ignoring case, as
/// Azure's do). An unknown role grants nothing.
pub fn role_allows(name: &str, data_action: &str) -> bool {
    ROLES
        .iter()
        .filter(|r| r.name.eq_ignore_ascii_case(name))
        .flat_map(|r| r.data_actions)
        .any(|pattern| matches(pattern, data_action))
}

/// Matches `text` against `pattern`, where `*` is any run of characters, ignoring ASCII case.
fn matches(pattern: &str, text: &str) -> bool {
    let pattern = pattern.to_ascii_lowercase();
    let text = text.to_ascii_lowercase();
    let mut parts = pattern.split('*');
    let first = parts.next().unwrap_or_default();
    let Some(mut rest) = text.strip_prefix(first) else {
        return false;
    };
    let parts: Vec<&str> = parts.collect();
    let Some((last, middle)) = parts.split_last() else {
        return rest.is_empty();
    };
    for part in middle {
        match rest.find(part) {
            Some(at) => rest = &rest[at + part.len()..],
            None => return false,
        }
    }
    rest.len() >= last.len() && rest.ends_with(last)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn readers_read_and_contributors_write() {
        let reader = "IoT Hub Data Reader";
        assert!(role_allows(
            reader,
            "Microsoft.Devices/IotHubs/devices/read"
        ));
        assert!(role_allows(reader, "Microsoft.Devices/IotHubs/twins/read"));
        assert!(!role_allows(
            reader,
            "Microsoft.Devices/IotHubs/devices/write"
        ));
        assert!(!role_allows(
            reader,
            "Microsoft.Devices/IotHubs/directMethods/invoke/action"
        ));
        let contributor = "iot hub data contributor";
        assert!(role_allows(
            contributor,
            "Microsoft.Devices/IotHubs/cloudToDeviceMessages/send/action"
        ));
        assert!(!role_allows(
            contributor,
            "Microsoft.Devices/provisioningServices/enrollments/read"
        ));
    }

    #[test]
    fn narrow_roles_cover_their_resource_only() {
        let registry = "IoT Hub Registry Contributor";
        assert!(role_allows(
            registry,
            "Microsoft.Devices/IotHubs/devices/delete"
        ));
        assert!(!role_allows(
            registry,
            "Microsoft.Devices/IotHubs/twins/write"
        ));
        let twins = "IoT Hub Twin Contributor";
        assert!(role_allows(twins, "Microsoft.Devices/IotHubs/twins/write"));
        assert!(!role_allows(
            twins,
            "Microsoft.Devices/IotHubs/devices/read"
        ));
        let dps_reader = "Device Provisioning Service Data Reader";
        assert!(role_allows(
            dps_reader,
            "Microsoft.Devices/provisioningServices/enrollmentGroups/read"
        ));
        assert!(!role_allows(
            dps_reader,
            "Microsoft.Devices/provisioningServices/enrollments/delete"
        ));
        assert!(!role_allows(
            "Owner",
            "Microsoft.Devices/IotHubs/devices/read"
        ));
    }

    #[test]
    fn wildcards_match_like_azure() {
        assert!(matches("a/*", "a/b/c"));
        assert!(matches("a/*/read", "a/b/c/read"));
        assert!(!matches("a/*/read", "a/read"));
        assert!(!matches("a/*/read", "a/b/write"));
        assert!(matches("a", "A"));
        assert!(!matches("a", "ab"));
    }
}
