//! Linked IoT hubs: the hubs DPS may assign devices to (Azure docs, IoT Hub Device
//! Provisioning Service (DPS) terminology, 'Linked IoT hubs'), each with the
//! owner-level connection string DPS reaches its registry with, a weight and whether the
//! service's allocation may pick it (Azure docs, Quickstart: Set up the IoT Hub Device
//! Provisioning Service with Azure CLI, 'Verify the provisioning service'; Tutorial: Provision
//! devices across load-balanced IoT hubs, 'Set the Device Provisioning Service allocation
//! policy').

use std::time::Duration;

use ironhub_auth::ConnectionString;
use ironhub_store::{DpsCollection, DpsWrite, WriteConflict};

use crate::HubCallError;
use crate::model::LinkedHub;
use crate::rules::normalize_if_match;
use crate::{Dps, DpsError, from_record, read_all, to_record};

/// At most 50 hubs may be linked (Azure docs, What is Azure IoT Hub Device Provisioning
/// Service?, 'Quotas and Limits').
pub const MAX_LINKED_HUBS: u64 = 50;
/// The largest allocation weight accepted.
pub const MAX_ALLOCATION_WEIGHT: u32 = 1000;

fn with_etag(record: &ironhub_store::DpsRecord) -> Result<LinkedHub, DpsError> {
    let mut hub: LinkedHub = from_record(record)?;
    hub.etag = Some(record.etag.clone());
    Ok(hub)
}

/// A connection string's host name without its port (`hub2.example:8443` is `hub2.example`).
fn host_of(host_name: &str) -> &str {
    host_name.rsplit_once(':').map_or(host_name, |(h, p)| {
        if p.chars().all(|c| c.is_ascii_digit()) {
            h
        } else {
            host_name
        }
    })
}

/// A linked hub's connection string: a shared access policy's (name and key), not a device's.
fn hub_connection_string(text: &str) -> Result<ConnectionString, DpsError> {
    let cs = ConnectionString::parse(text.trim()).map_err(|e| {
        DpsError::BadRequest(format!("The hub connection string is not valid: {e}."))
    })?;
    if cs.device_id.is_some() {
        return Err(DpsError::BadRequest(
            "That is a device connection string; linking a hub needs the connection string of \
             one of its shared access policies, such as iothubowner."
                .into(),
        ));
    }
    let missing = |v: &Option<String>| v.as_deref().is_none_or(str::is_empty);
    if missing(&cs.shared_access_key) || missing(&cs.shared_access_key_name) {
        return Err(DpsError::BadRequest(
            "The hub connection string needs SharedAccessKeyName and SharedAccessKey (an \
             iothubowner-level policy)."
                .into(),
        ));
    }
    Ok(cs)
}

/// The name a hub is linked by when it is linked by its connection string alone (as
/// `az iot dps linked-hub create --connection-string` does): the string's host name, without
/// a port. Refused unless the text is a policy's connection string that names a host.
pub fn linked_hub_name(connection_string: &str) -> Result<String, DpsError> {
    let cs = hub_connection_string(connection_string)?;
    let host = host_of(cs.host_name.trim());
    if host.is_empty() {
        return Err(DpsError::BadRequest(
            "The hub connection string has no HostName.".into(),
        ));
    }
    Ok(host.to_owned())
}

impl Dps {
    /// Every linked hub, ordered by host name.
    pub async fn list_linked_hubs(&self) -> Result<Vec<LinkedHub>, DpsError> {
        read_all(self.store.as_ref(), DpsCollection::LinkedHubs, None)
            .await?
            .iter()
            .map(with_etag)
            .collect()
    }

    /// One linked hub, by host name (any case).
    pub async fn get_linked_hub(&self, name: &str) -> Result<LinkedHub, DpsError> {
        let record = self
            .store
            .dps_get(DpsCollection::LinkedHubs, name)
            .await?
            .ok_or_else(|| DpsError::LinkedHubNotFound(name.to_owned()))?;
        with_etag(&record)
    }

    /// Links a hub, or (with `if_match`, `*` or its etag) updates the link. The connection
    /// string must name the hub (`HostName`, with or without a port) and carry a key.
    /// A hub that cannot be used is refused (see `check_linked_hub`).
    pub async fn put_linked_hub(
        &self,
        hub: LinkedHub,
        if_match: Option<&str>,
    ) -> Result<LinkedHub, DpsError> {
        self.write_linked_hub(hub, if_match, true).await
    }

    /// `put_linked_hub`, calling the hub first only when `check`.
    pub(crate) async fn write_linked_hub(
        &self,
        hub: LinkedHub,
        if_match: Option<&str>,
        check: bool,
    ) -> Result<LinkedHub, DpsError> {
        let cs = hub_connection_string(&hub.connection_string)?;
        let name = hub.name.trim().to_owned();
        if name.is_empty() {
            return Err(DpsError::BadRequest(
                "A linked hub needs a name (its host name).".into(),
            ));
        }
        let host = host_of(&cs.host_name);
        if !host
            .trim_matches(['[', ']'])
            .eq_ignore_ascii_case(name.trim_matches(['[', ']']))
        {
            return Err(DpsError::BadRequest(format!(
                "The connection string is for '{}', not for the hub '{name}'.",
                cs.host_name
            )));
        }
        if hub.weight() > MAX_ALLOCATION_WEIGHT {
            return Err(DpsError::BadRequest(format!(
                "The allocation weight is at most {MAX_ALLOCATION_WEIGHT}."
            )));
        }
        let stored = LinkedHub {
            name: name.clone(),
            etag: None,
            ..hub
        };
        let measured = if check {
            self.check_linked_hub(&stored).await?
        } else {
            None
        };
        let if_match = if_match.map(normalize_if_match);
        if if_match.is_none()
            && self
                .store
                .dps_count(DpsCollection::LinkedHubs, None)
                .await?
                >= MAX_LINKED_HUBS
        {
            return Err(DpsError::BadRequest(format!(
                "At most {MAX_LINKED_HUBS} hubs can be linked."
            )));
        }
        let record = to_record(&name, None, &stored)?;
        let write = match &if_match {
            None => DpsWrite::Create(record),
            Some(tag) => DpsWrite::Replace {
                record,
                if_match: Some(tag.clone()),
            },
        };
        match self
            .store
            .dps_write(DpsCollection::LinkedHubs, vec![write])
            .await?
        {
            Ok(mut done) => match done.pop().flatten() {
                Some(r) => {
                    if check {
                        self.record_latency(&name, measured);
                    }
                    // Lowest-latency allocation should know the new link at once.
                    let dps = self.clone();
                    tokio::spawn(async move {
                        let _ = dps.measure_latencies().await;
                    });
                    with_etag(&r)
                }
                None => Err(DpsError::ServerError("the store wrote no hub".into())),
            },
            Err(failed) => Err(match failed.first().map(|(_, c)| *c) {
                Some(WriteConflict::AlreadyExists) => {
                    DpsError::Conflict(format!("The hub '{name}' is linked already."))
                }
                Some(WriteConflict::NotFound) => DpsError::LinkedHubNotFound(name),
                _ => DpsError::PreconditionFailed(if_match.unwrap_or_default()),
            }),
        }
    }

    /// Calls a hub about to be linked, as provisioning will: a hub whose certificate is not
    /// trusted, or that rejects the connection string's key, is refused with the fix; one that
    /// does not answer now (down, or not resolvable from here) is linked with a warning in the
    /// log, since it may come up later (and shows no `latencyMs` until it answers).
    /// Returns the round trip when the hub answered.
    async fn check_linked_hub(&self, hub: &LinkedHub) -> Result<Option<Duration>, DpsError> {
        let name = &hub.name;
        let outcome = match self.services.connector.connect(hub) {
            Ok(registry) => registry.ping().await,
            Err(e) => Err(e),
        };
        match outcome {
            Ok(rtt) => Ok(Some(rtt)),
            Err(HubCallError::Untrusted(why)) => Err(DpsError::BadRequest(format!(
                "The hub '{name}' cannot be linked: its certificate is not trusted: {why}."
            ))),
            Err(HubCallError::Status {
                status: 401 | 403,
                message,
            }) => Err(DpsError::BadRequest(format!(
                "The hub '{name}' rejected the connection string ({message}); link it with the \
                 connection string of a policy with RegistryWrite and ServiceConnect, such as \
                 its iothubowner (`ironhub info` on its server prints it)."
            ))),
            Err(e) => {
                tracing::warn!(
                    hub = %name,
                    error = %e,
                    "linked a hub that does not answer now: devices cannot be assigned to it until it does"
                );
                Ok(None)
            }
        }
    }

    /// Keeps (or forgets) the round trip to a hub just linked, until the next measurement.
    fn record_latency(&self, name: &str, measured: Option<Duration>) {
        if let Ok(mut latencies) = self.runtime.latencies.write() {
            match measured {
                Some(rtt) => latencies.insert(name.to_ascii_lowercase(), rtt),
                None => latencies.remove(&name.to_ascii_lowercase()),
            };
        }
    }

    /// Unlinks a hub; with `if_match`, only the link with that etag. Devices already on the
    /// hub stay there.
    pub async fn delete_linked_hub(
        &self,
        name: &str,
        if_match: Option<&str>,
    ) -> Result<(), DpsError> {
        let if_match = if_match.map(normalize_if_match);
        let write = DpsWrite::Delete {
            id: name.to_owned(),
            if_match: if_match.clone(),
        };
        match self
            .store
            .dps_write(DpsCollection::LinkedHubs, vec![write])
            .await?
        {
            Ok(_) => Ok(()),
            Err(failed) => Err(match failed.first().map(|(_, c)| *c) {
                Some(WriteConflict::EtagMismatch) => {
                    DpsError::PreconditionFailed(if_match.unwrap_or_default())
                }
                _ => DpsError::LinkedHubNotFound(name.to_owned()),
            }),
        }
    }

    /// The linked hub a name refers to (any case), as it is linked.
    pub(crate) fn find_hub<'h>(hubs: &'h [LinkedHub], name: &str) -> Option<&'h LinkedHub> {
        hubs.iter()
            .find(|h| h.name.eq_ignore_ascii_case(name.trim()))
    }
}

#[cfg(test)]
mod tests {
    use super::linked_hub_name;

    #[test]
    fn a_hub_is_named_by_its_connection_strings_host_without_port() {
        let named = |cs: &str| linked_hub_name(cs).map_err(|e| e.to_string());
        assert_eq!(
            named(
                "HostName=Hub2.example:8443;SharedAccessKeyName=iothubowner;SharedAccessKey=a2V5"
            ),
            Ok("Hub2.example".to_owned())
        );
        assert_eq!(
            named("HostName=[::1]:443;SharedAccessKeyName=o;SharedAccessKey=a2V5"),
            Ok("[::1]".to_owned())
        );
        assert!(named("not a connection string").is_err());
        assert!(named("HostName=hub.example;SharedAccessKeyName=o").is_err());
        assert!(
            named("HostName=hub.example;DeviceId=d;SharedAccessKey=a2V5")
                .unwrap_err()
                .contains("device connection string")
        );
    }
}
