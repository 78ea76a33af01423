//! Allocation: which linked hub a device goes to (Azure docs, IoT Hub Device Provisioning Service
//! (DPS) terminology, 'Allocation policy'; Tutorial: Provision devices across load-balanced IoT
//! hubs, 'Set the Device Provisioning Service allocation policy'), and what a repeated
//! registration does (Azure docs, IoT Hub Device reprovisioning concepts).
//!
//! Everything here is a pure function of its inputs, so that every node decides alike.

use std::collections::HashMap;
use std::time::Duration;

use ring::digest;

use crate::model::{
    AllocationPolicy, CustomAllocationDefinition, DeviceRegistrationState, EnrollmentSettings,
    LinkedHub, RegistrationStatus, ReprovisionPolicy, Substatus,
};
use crate::{Dps, DpsError};

/// What allocation decided.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Allocation {
    /// The device goes to this linked hub (its name as linked).
    Hub(String),
    /// A webhook decides (custom allocation): call it with these candidate hubs
    /// (`linkedHubs` in the webhook's request: Azure docs, Tutorial: Use custom allocation
    /// policies with Device Provisioning Service (DPS), 'Create the custom allocation function').
    Custom {
        definition: CustomAllocationDefinition,
        linked_hubs: Vec<String>,
    },
}

/// The hubs an enrollment may use: the ones it names (`iotHubs`, and `iotHubHostName`), else
/// every linked hub whose `applyAllocationPolicy` is not false. Hubs with weight 0 are left
/// out of hashed allocation only.
pub fn candidates<'h>(
    settings: &EnrollmentSettings,
    linked: &'h [LinkedHub],
) -> Vec<&'h LinkedHub> {
    let named: Vec<&str> = settings
        .iot_hubs
        .iter()
        .flatten()
        .chain(settings.iot_hub_host_name.iter())
        .map(String::as_str)
        .collect();
    let mut out: Vec<&LinkedHub> = if named.is_empty() {
        linked
            .iter()
            .filter(|h| h.applies_allocation_policy())
            .collect()
    } else {
        linked
            .iter()
            .filter(|h| named.iter().any(|n| n.eq_ignore_ascii_case(&h.name)))
            .collect()
    };
    out.sort_by_key(|h| h.name.to_ascii_lowercase());
    out
}

/// A number in (0, 1) from SHA-256 of the (lower-cased) registration id and hub name.
fn unit_hash(registration_id: &str, hub: &str) -> f64 {
    let input = format!(
        "{}\n{}",
        registration_id.to_ascii_lowercase(),
        hub.to_ascii_lowercase()
    );
    let d = digest::digest(&digest::SHA256, input.as_bytes());
    let mut first = [0u8; 8];
    first.copy_from_slice(&d.as_ref()[..8]);
    let bits = u64::from_be_bytes(first) >> 11; // 53 bits
    // (bits + 0.5) / 2^53 is never 0 nor 1.
    (bits as f64 + 0.5) / (1u64 << 53) as f64
}

/// Evenly weighted distribution: weighted rendezvous hashing of the registration id over the
/// candidates. A hub's share of devices is its weight over the sum of weights (Azure docs,
/// Tutorial: Provision devices across load-balanced IoT hubs, 'Set the Device Provisioning
/// Service allocation policy'); a registration id always lands on the same hub while the
/// candidates stay the same,
/// and adding a hub moves only the devices it takes (previously registered devices are not
/// rebalanced unless they re-register: the same tutorial, 'How the allocation policy assigns
/// devices to IoT Hubs').
pub fn hashed<'h>(registration_id: &str, candidates: &[&'h LinkedHub]) -> Option<&'h LinkedHub> {
    candidates
        .iter()
        .filter(|h| h.weight() > 0)
        .map(|h| {
            let score = f64::from(h.weight()) / -unit_hash(registration_id, &h.name).ln();
            (score, *h)
        })
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, h)| h)
}

/// Lowest latency: the candidate with the smallest measured round trip; ties (and hubs
/// never measured) are broken by hashing (Azure docs, IoT Hub Device Provisioning Service (DPS)
/// terminology, 'Allocation policy'). Without any measurement it is
/// evenly weighted distribution. ironhub measures latency from the DPS to each hub, since
/// every device reaches both through the same server.
pub fn lowest_latency<'h>(
    registration_id: &str,
    candidates: &[&'h LinkedHub],
    latencies: &HashMap<String, Duration>,
) -> Option<&'h LinkedHub> {
    let rtt = |h: &LinkedHub| latencies.get(&h.name.to_ascii_lowercase()).copied();
    let best = candidates.iter().filter_map(|h| rtt(h)).min();
    match best {
        None => hashed(registration_id, candidates),
        Some(best) => {
            let tied: Vec<&LinkedHub> = candidates
                .iter()
                .filter(|h| rtt(h) == Some(best))
                .copied()
                .collect();
            // A tie among hubs of weight 0 still has to pick one.
            hashed(registration_id, &tied).or_else(|| tied.first().copied())
        }
    }
}

/// Picks the hub for a registration of an enrollment with `settings`, among `linked`.
/// `latencies` are round trips by lower-cased hub name, for `geoLatency`.
pub fn allocate(
    settings: &EnrollmentSettings,
    registration_id: &str,
    linked: &[LinkedHub],
    latencies: &HashMap<String, Duration>,
) -> Result<Allocation, DpsError> {
    let policy = settings.allocation_policy.unwrap_or_default();
    let candidates = candidates(settings, linked);
    let none = || {
        DpsError::NoHubAvailable(
            "No linked IoT hub can take this device: link a hub, or name a linked one in the \
             enrollment."
                .into(),
        )
    };
    let picked = match policy {
        AllocationPolicy::Static => {
            // The enrollment's hub overrides the service (Azure docs, IoT Hub Device
            // Provisioning Service (DPS) terminology, 'Allocation policy').
            let only = match settings.iot_hubs.as_deref() {
                Some([only]) => Some(only.as_str()),
                _ => None,
            };
            let Some(name) = settings.iot_hub_host_name.as_deref().or(only) else {
                // No hub named: the one hub that takes allocations is the static one; with
                // several there is no single hub to assign.
                return match candidates.as_slice() {
                    [one] => Ok(Allocation::Hub(one.name.clone())),
                    [] => Err(none()),
                    more => Err(DpsError::NoHubAvailable(format!(
                        "Static allocation names no hub (iotHubHostName) and {} linked hubs \
                         could take the device; name one in the enrollment.",
                        more.len()
                    ))),
                };
            };
            return Dps::find_hub(linked, name)
                .map(|h| Allocation::Hub(h.name.clone()))
                .ok_or_else(|| DpsError::LinkedHubNotFound(name.to_owned()));
        }
        AllocationPolicy::Custom => {
            let definition = settings
                .custom_allocation_definition
                .clone()
                .ok_or_else(|| {
                    DpsError::CustomAllocationFailed(
                        "The enrollment has no customAllocationDefinition.".into(),
                    )
                })?;
            return Ok(Allocation::Custom {
                definition,
                linked_hubs: candidates.iter().map(|h| h.name.clone()).collect(),
            });
        }
        AllocationPolicy::Hashed => hashed(registration_id, &candidates),
        AllocationPolicy::GeoLatency => lowest_latency(registration_id, &candidates, latencies),
    };
    picked
        .map(|h| Allocation::Hub(h.name.clone()))
        .ok_or_else(none)
}

/// What a registration does to the device's data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HubAction {
    /// First assignment to `hub`: create the device there with the enrollment's initial twin.
    Assign,
    /// The device stays on `hub` with its twin (its credentials and capabilities refreshed).
    Keep,
    /// Move to `hub`: copy the twin from `from`, then remove the device from `from`.
    Migrate { from: String },
    /// Give the device the initial twin on `hub`; when `from` is another hub, remove the
    /// device there.
    Reset { from: Option<String> },
}

/// The outcome of a (re-)registration: the hub, what to do there, and the substatus to
/// report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reprovision {
    pub hub: String,
    pub action: HubAction,
    pub substatus: Substatus,
}

/// The reprovisioning policy that applies: the enrollment's; when it has none, the default
/// (re-provision and migrate data), except for a device on an API version from before
/// reprovisioning existed, which keeps the legacy behaviour of staying on its hub (Azure docs,
/// IoT Hub Device reprovisioning concepts, 'Managing backwards compatibility').
pub fn effective_policy(policy: Option<ReprovisionPolicy>, legacy_api: bool) -> ReprovisionPolicy {
    match (policy, legacy_api) {
        (Some(p), _) => p,
        (None, false) => ReprovisionPolicy::default(),
        (None, true) => ReprovisionPolicy {
            update_hub_assignment: false,
            migrate_device_data: true,
        },
    }
}

/// Whether a device API version predates reprovisioning (REST 2018-04-01 and earlier: Azure
/// docs, IoT Hub Device reprovisioning concepts, 'Managing backwards compatibility').
/// Versions are `YYYY-MM-DD[-preview]`.
pub fn is_legacy_api_version(api_version: &str) -> bool {
    api_version.get(..10).is_some_and(|d| d <= "2018-04-01")
}

/// Decides a registration from the enrollment's policy, the device's previous registration
/// and the hub allocation picked now (Azure docs, IoT Hub Device reprovisioning concepts,
/// 'Reprovisioning policies'):
/// - no previous assignment (or its hub is no longer linked): assign, `initialAssignment`;
/// - never re-provision (`updateHubAssignment: false`): stay on the previous hub,
///   `reprovisionedToInitialAssignment`;
/// - re-provision and migrate data: same hub, keep (`initialAssignment`); another hub,
///   migrate the twin there (`deviceDataMigrated`);
/// - re-provision and reset: the initial twin again, on the same hub too (the factory reset
///   of 'Reprovisioning policies'), `deviceDataReset`.
pub fn decide(
    policy: ReprovisionPolicy,
    previous: Option<&DeviceRegistrationState>,
    allocated: &str,
    is_linked: impl Fn(&str) -> bool,
) -> Reprovision {
    let assign = || Reprovision {
        hub: allocated.to_owned(),
        action: HubAction::Assign,
        substatus: Substatus::InitialAssignment,
    };
    let Some(prev_hub) = previous
        .filter(|p| p.status == RegistrationStatus::Assigned)
        .and_then(|p| p.assigned_hub.as_deref())
        .filter(|h| is_linked(h))
    else {
        return assign();
    };
    if !policy.update_hub_assignment {
        return Reprovision {
            hub: prev_hub.to_owned(),
            action: HubAction::Keep,
            substatus: Substatus::ReprovisionedToInitialAssignment,
        };
    }
    let same = prev_hub.eq_ignore_ascii_case(allocated);
    match (policy.migrate_device_data, same) {
        (true, true) => Reprovision {
            hub: prev_hub.to_owned(),
            action: HubAction::Keep,
            substatus: Substatus::InitialAssignment,
        },
        (true, false) => Reprovision {
            hub: allocated.to_owned(),
            action: HubAction::Migrate {
                from: prev_hub.to_owned(),
            },
            substatus: Substatus::DeviceDataMigrated,
        },
        (false, same) => Reprovision {
            hub: allocated.to_owned(),
            action: HubAction::Reset {
                from: (!same).then(|| prev_hub.to_owned()),
            },
            substatus: Substatus::DeviceDataReset,
        },
    }
}

impl Dps {
    /// Allocates a hub for a registration of an enrollment with `settings`, among the linked
    /// hubs (see [`allocate`]).
    pub async fn allocate(
        &self,
        settings: &EnrollmentSettings,
        registration_id: &str,
        latencies: &HashMap<String, Duration>,
    ) -> Result<Allocation, DpsError> {
        let linked = self.list_linked_hubs().await?;
        allocate(settings, registration_id, &linked, latencies)
    }
}
