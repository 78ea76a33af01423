//! `ironhub dps enrollment …` and `ironhub dps enrollment-group …`: the bodies az builds from
//! its flags (`azext_iot/operations/dps.py`), and its read-change-write updates.
//!
//! As in az: `create` always sends `capabilities`, `initialTwin` and `reprovisionPolicy`
//! (`reprovisionandmigratedata` unless `--rp` says otherwise); `update` reads the record (and,
//! for symmetric key attestation, its keys through the attestation mechanism call, so that
//! they are sent back unchanged), changes what the flags name and writes it back with
//! `If-Match: <--etag or *>`.

use anyhow::{Context as _, bail};
use ironhub_client::{DpsClient, EnrollmentKind};
use serde_json::{Map, Value, json};

use super::certificate::read_certificate;
use super::dps::{
    AllocationPolicy, AttestationType, CaNameFlags, EnrollmentCreateArgs, EnrollmentUpdateArgs,
    GroupCreateArgs, GroupUpdateArgs, IndividualFlags, RemoveFlags, ReprovisionPolicy,
    SettingsFlags,
};

/// `compute-device-key`: `base64(HMAC-SHA256(base64decode(group key), registration id))`.
pub fn derive_key(group_key: &str, registration_id: &str) -> anyhow::Result<String> {
    if registration_id.trim().is_empty() {
        bail!("--registration-id is empty");
    }
    ironhub_auth::derive_device_key(group_key, registration_id)
        .map_err(|e| anyhow::anyhow!("the enrollment group key is not usable: {e}"))
}

/// `enrollment create`
pub async fn create_individual(
    client: &DpsClient,
    args: &EnrollmentCreateArgs,
) -> anyhow::Result<Value> {
    let id = &args.id.enrollment_id;
    let body = individual_body(id, args.attestation_type, &args.individual, &args.settings)?;
    Ok(client
        .put_enrollment(EnrollmentKind::Individual, id, &body, None)
        .await?)
}

/// `enrollment-group create`
pub async fn create_group(client: &DpsClient, args: &GroupCreateArgs) -> anyhow::Result<Value> {
    let id = &args.id.enrollment_id;
    let body = group_body(id, &args.ca, &args.settings)?;
    Ok(client
        .put_enrollment(EnrollmentKind::Group, id, &body, None)
        .await?)
}

/// `enrollment show` and `enrollment-group show`: the record as DPS answers it; with
/// `--show-keys`, a symmetric key record's attestation with its keys.
pub async fn show(
    client: &DpsClient,
    kind: EnrollmentKind,
    id: &str,
    show_keys: Option<bool>,
) -> anyhow::Result<Value> {
    let mut record = client.get_enrollment(kind, id).await?;
    if show_keys == Some(true) {
        let attestation = record["attestation"]["type"].as_str().unwrap_or("none");
        if attestation == "symmetricKey" {
            record["attestation"] = client.attestation_mechanism(kind, id).await?;
        } else {
            warn(&format!(
                "--show-keys: '{id}' attests by '{attestation}'; only symmetric key \
                 attestation has keys to show"
            ));
        }
    }
    Ok(record)
}

/// `enrollment update`
pub async fn update_individual(
    client: &DpsClient,
    args: &EnrollmentUpdateArgs,
) -> anyhow::Result<Value> {
    let kind = EnrollmentKind::Individual;
    let id = &args.id.enrollment_id;
    let s = &args.settings;
    let mut record = client.get_enrollment(kind, id).await?;
    let attestation = record["attestation"]["type"]
        .as_str()
        .unwrap_or("none")
        .to_owned();
    let ek = args.individual.endorsement_key.as_deref();
    check_update_flags(&attestation, s, &args.remove, ek, &CaNameFlags::default())?;
    match attestation.as_str() {
        "tpm" => {
            if let Some(ek) = ek {
                record["attestation"]["tpm"]["endorsementKey"] = ek.into();
            }
        }
        "x509" => {
            let slots = &mut record["attestation"]["x509"]["clientCertificates"];
            update_certificates(slots, s, &args.remove)?;
        }
        "symmetricKey" => {
            record["attestation"] = client.attestation_mechanism(kind, id).await?;
            set_keys(&mut record["attestation"], s);
        }
        _ => {}
    }
    let info = &args.individual;
    if let Some(device_id) = &info.device_id {
        record["deviceId"] = device_id.clone().into();
    }
    if let Some(text) = &info.device_information {
        record["optionalDeviceInformation"] = twin_collection(Some(text), "--device-information")?;
    }
    update_settings(&mut record, s)?;
    let etag = args.etag.as_deref().unwrap_or("*");
    Ok(client.put_enrollment(kind, id, &record, Some(etag)).await?)
}

/// `enrollment-group update`
pub async fn update_group(client: &DpsClient, args: &GroupUpdateArgs) -> anyhow::Result<Value> {
    let kind = EnrollmentKind::Group;
    let id = &args.id.enrollment_id;
    let s = &args.settings;
    let mut record = client.get_enrollment(kind, id).await?;
    let attestation = record["attestation"]["type"]
        .as_str()
        .unwrap_or("none")
        .to_owned();
    check_update_flags(&attestation, s, &args.remove, None, &args.ca)?;
    match attestation.as_str() {
        "symmetricKey" => {
            record["attestation"] = client.attestation_mechanism(kind, id).await?;
            set_keys(&mut record["attestation"], s);
        }
        "x509" => update_group_x509(
            &mut record["attestation"]["x509"],
            s,
            &args.ca,
            &args.remove,
        )?,
        _ => {}
    }
    update_settings(&mut record, s)?;
    let etag = args.etag.as_deref().unwrap_or("*");
    Ok(client.put_enrollment(kind, id, &record, Some(etag)).await?)
}

/// The body of `PUT /enrollments/{id}` for `enrollment create`.
pub fn individual_body(
    id: &str,
    attestation_type: AttestationType,
    individual: &IndividualFlags,
    s: &SettingsFlags,
) -> anyhow::Result<Value> {
    let keys = s.primary_key.is_some() || s.secondary_key.is_some();
    let certificates = s.certificate_path.is_some() || s.secondary_certificate_path.is_some();
    let ek = individual.endorsement_key.as_deref();
    let attestation = match attestation_type {
        AttestationType::Tpm => {
            refuse_keys(keys, "tpm")?;
            refuse_certificates(certificates, "tpm")?;
            let Some(ek) = ek else {
                bail!("--attestation-type tpm needs the TPM's --endorsement-key (--ek)");
            };
            json!({ "type": "tpm", "tpm": { "endorsementKey": ek } })
        }
        AttestationType::X509 => {
            refuse_keys(keys, "x509")?;
            refuse_endorsement_key(ek, "x509")?;
            if !certificates {
                bail!(
                    "--attestation-type x509 needs the device's certificate: --certificate-path \
                     (--cp) and optionally --secondary-certificate-path (--scp)"
                );
            }
            json!({ "type": "x509", "x509": { "clientCertificates": certificate_slots(s)? } })
        }
        AttestationType::SymmetricKey => {
            refuse_certificates(certificates, "symmetricKey")?;
            refuse_endorsement_key(ek, "symmetricKey")?;
            symmetric_key(s)
        }
    };
    let mut body = json!({
        "registrationId": id,
        "attestation": attestation,
        "capabilities": { "iotEdge": s.edge_enabled.unwrap_or(false) },
        "initialTwin": initial_twin(None, s)?,
        "reprovisionPolicy": reprovision_policy(s.reprovision_policy),
        "optionalDeviceInformation":
            twin_collection(individual.device_information.as_deref(), "--device-information")?,
    });
    if let Some(device_id) = &individual.device_id {
        body["deviceId"] = device_id.clone().into();
    }
    if let Some(status) = s.provisioning_status {
        body["provisioningStatus"] = status.as_str().into();
    }
    apply_allocation(&mut body, s, true)?;
    apply_issuance_policy(&mut body, s);
    Ok(body)
}

/// The body of `PUT /enrollmentGroups/{id}` for `enrollment-group create`: X.509 with signing
/// certificates (`--cp`) or CA references (`--cn`), else symmetric key.
pub fn group_body(id: &str, ca: &CaNameFlags, s: &SettingsFlags) -> anyhow::Result<Value> {
    let keys = s.primary_key.is_some() || s.secondary_key.is_some();
    let certificates = s.certificate_path.is_some() || s.secondary_certificate_path.is_some();
    let cas = ca.root_ca_name.is_some() || ca.secondary_root_ca_name.is_some();
    let attestation = if certificates || cas {
        if certificates && cas {
            bail!(
                "give the group either its signing certificate (--certificate-path) or the name \
                 of an uploaded CA (--root-ca-name), not both"
            );
        }
        refuse_keys(keys, "x509")?;
        let x509 = if certificates {
            json!({ "signingCertificates": certificate_slots(s)? })
        } else {
            ca_references(ca)
        };
        json!({ "type": "x509", "x509": x509 })
    } else {
        symmetric_key(s)
    };
    let mut body = json!({
        "enrollmentGroupId": id,
        "attestation": attestation,
        "capabilities": { "iotEdge": s.edge_enabled.unwrap_or(false) },
        "initialTwin": initial_twin(None, s)?,
        "reprovisionPolicy": reprovision_policy(s.reprovision_policy),
    });
    if let Some(status) = s.provisioning_status {
        body["provisioningStatus"] = status.as_str().into();
    }
    apply_allocation(&mut body, s, true)?;
    apply_issuance_policy(&mut body, s);
    Ok(body)
}

fn symmetric_key(s: &SettingsFlags) -> Value {
    let mut keys = Map::new();
    if let Some(k) = &s.primary_key {
        keys.insert("primaryKey".into(), k.clone().into());
    }
    if let Some(k) = &s.secondary_key {
        keys.insert("secondaryKey".into(), k.clone().into());
    }
    json!({ "type": "symmetricKey", "symmetricKey": keys })
}

fn set_keys(attestation: &mut Value, s: &SettingsFlags) {
    if let Some(k) = &s.primary_key {
        attestation["symmetricKey"]["primaryKey"] = k.clone().into();
    }
    if let Some(k) = &s.secondary_key {
        attestation["symmetricKey"]["secondaryKey"] = k.clone().into();
    }
}

/// `{"primary": {"certificate": …}, "secondary": …}` from `--cp` and `--scp`, each file read
/// as az reads it (PEM text, or base64 of DER).
fn certificate_slots(s: &SettingsFlags) -> anyhow::Result<Value> {
    let mut slots = Map::new();
    if let Some(path) = &s.certificate_path {
        slots.insert(
            "primary".into(),
            json!({ "certificate": read_certificate(path)? }),
        );
    }
    if let Some(path) = &s.secondary_certificate_path {
        slots.insert(
            "secondary".into(),
            json!({ "certificate": read_certificate(path)? }),
        );
    }
    Ok(Value::Object(slots))
}

fn ca_references(ca: &CaNameFlags) -> Value {
    let mut refs = Map::new();
    if let Some(name) = &ca.root_ca_name {
        refs.insert("primary".into(), name.clone().into());
    }
    if let Some(name) = &ca.secondary_root_ca_name {
        refs.insert("secondary".into(), name.clone().into());
    }
    json!({ "caReferences": refs })
}

/// Changes a pair of certificate slots as `--rc`, `--rsc`, `--cp` and `--scp` say. A slot
/// read back without its certificate (DPS shows only its `info`) keeps the stored one.
fn update_certificates(
    slots: &mut Value,
    s: &SettingsFlags,
    remove: &RemoveFlags,
) -> anyhow::Result<()> {
    if !slots.is_object() {
        *slots = json!({});
    }
    if remove.remove_certificate == Some(true) {
        slots["primary"] = Value::Null;
    }
    if remove.remove_secondary_certificate == Some(true) {
        slots["secondary"] = Value::Null;
    }
    if let Some(path) = &s.certificate_path {
        slots["primary"] = json!({ "certificate": read_certificate(path)? });
    }
    if let Some(path) = &s.secondary_certificate_path {
        slots["secondary"] = json!({ "certificate": read_certificate(path)? });
    }
    Ok(())
}

/// An X.509 group's update: new signing certificates or CA names replace what the group had
/// of that kind (switching between the two kinds replaces the attestation).
fn update_group_x509(
    x509: &mut Value,
    s: &SettingsFlags,
    ca: &CaNameFlags,
    remove: &RemoveFlags,
) -> anyhow::Result<()> {
    let certificates = s.certificate_path.is_some() || s.secondary_certificate_path.is_some();
    let cas = ca.root_ca_name.is_some() || ca.secondary_root_ca_name.is_some();
    if certificates && cas {
        bail!(
            "give the group either its signing certificate (--certificate-path) or the name of \
             an uploaded CA (--root-ca-name), not both"
        );
    }
    let both_removed = remove.remove_certificate == Some(true)
        && remove.remove_secondary_certificate == Some(true);
    if !certificates && !cas && both_removed {
        bail!("removing both certificates leaves the group none: give a new one as well");
    }
    let has_signing = x509["signingCertificates"].is_object();
    let has_refs = x509["caReferences"].is_object();
    if cas || (!certificates && has_refs) {
        if !has_refs {
            *x509 = json!({ "caReferences": {} });
        }
        let refs = &mut x509["caReferences"];
        if remove.remove_certificate == Some(true) {
            refs["primary"] = Value::Null;
        }
        if remove.remove_secondary_certificate == Some(true) {
            refs["secondary"] = Value::Null;
        }
        if let Some(name) = &ca.root_ca_name {
            refs["primary"] = name.clone().into();
        }
        if let Some(name) = &ca.secondary_root_ca_name {
            refs["secondary"] = name.clone().into();
        }
        return Ok(());
    }
    if certificates && !has_signing {
        *x509 = json!({ "signingCertificates": {} });
    }
    update_certificates(&mut x509["signingCertificates"], s, remove)
}

/// Refuses flags the record's attestation has no use for (az's
/// `_validate_arguments_for_attestation_mechanism`, plus the same rule for groups).
fn check_update_flags(
    attestation: &str,
    s: &SettingsFlags,
    remove: &RemoveFlags,
    endorsement_key: Option<&str>,
    ca: &CaNameFlags,
) -> anyhow::Result<()> {
    let keys = s.primary_key.is_some() || s.secondary_key.is_some();
    let certificates = s.certificate_path.is_some()
        || s.secondary_certificate_path.is_some()
        || remove.remove_certificate.is_some()
        || remove.remove_secondary_certificate.is_some()
        || ca.root_ca_name.is_some()
        || ca.secondary_root_ca_name.is_some();
    match attestation {
        "tpm" => {
            refuse_keys(keys, "tpm")?;
            refuse_certificates(certificates, "tpm")
        }
        "x509" => {
            refuse_keys(keys, "x509")?;
            refuse_endorsement_key(endorsement_key, "x509")
        }
        "symmetricKey" => {
            refuse_certificates(certificates, "symmetricKey")?;
            refuse_endorsement_key(endorsement_key, "symmetricKey")
        }
        _ => Ok(()),
    }
}

fn refuse_keys(keys: bool, attestation: &str) -> anyhow::Result<()> {
    if keys {
        bail!(
            "--primary-key and --secondary-key are for symmetric key attestation, not \
             '{attestation}'"
        );
    }
    Ok(())
}

fn refuse_certificates(certificates: bool, attestation: &str) -> anyhow::Result<()> {
    if certificates {
        bail!(
            "certificate flags (--certificate-path, --secondary-certificate-path, \
             --root-ca-name, --remove-certificate, …) are for x509 attestation, not \
             '{attestation}'"
        );
    }
    Ok(())
}

fn refuse_endorsement_key(ek: Option<&str>, attestation: &str) -> anyhow::Result<()> {
    if ek.is_some() {
        bail!("--endorsement-key is for tpm attestation, not '{attestation}'");
    }
    Ok(())
}

/// The settings `update` changes in both kinds of record.
fn update_settings(record: &mut Value, s: &SettingsFlags) -> anyhow::Result<()> {
    let Some(map) = record.as_object_mut() else {
        bail!("the DPS answered with a record that is not a JSON object");
    };
    // Read-only: the device's registration is not the client's to write.
    map.remove("registrationState");
    if let Some(status) = s.provisioning_status {
        record["provisioningStatus"] = status.as_str().into();
    }
    if s.reprovision_policy.is_some() {
        record["reprovisionPolicy"] = reprovision_policy(s.reprovision_policy);
    }
    let twin = initial_twin(Some(&record["initialTwin"]), s)?;
    record["initialTwin"] = twin;
    apply_allocation(record, s, false)?;
    if let Some(edge) = s.edge_enabled {
        record["capabilities"] = json!({ "iotEdge": edge });
    }
    apply_issuance_policy(record, s);
    Ok(())
}

/// `--certificate-authority-name`: the enrollment's `clientCertificateIssuancePolicy` (an
/// empty name removes it).
fn apply_issuance_policy(record: &mut Value, s: &SettingsFlags) {
    let Some(name) = s.certificate_authority_name.as_deref().map(str::trim) else {
        return;
    };
    if let Some(map) = record.as_object_mut() {
        if name.is_empty() {
            map.remove("clientCertificateIssuancePolicy");
        } else {
            map.insert(
                "clientCertificateIssuancePolicy".into(),
                json!({ "certificateAuthorityName": name }),
            );
        }
    }
}

/// `{"updateHubAssignment", "migrateDeviceData"}` as az maps `--reprovision-policy` (its
/// default, when none is given, is re-provision and migrate).
pub fn reprovision_policy(policy: Option<ReprovisionPolicy>) -> Value {
    let (update, migrate) = match policy {
        None | Some(ReprovisionPolicy::ReprovisionAndMigrateData) => (true, true),
        Some(ReprovisionPolicy::ReprovisionAndResetData) => (true, false),
        Some(ReprovisionPolicy::Never) => (false, false),
    };
    json!({ "updateHubAssignment": update, "migrateDeviceData": migrate })
}

/// `{"tags": {…}, "properties": {"desired": {…}}}`: each part from its flag when given, else
/// from `current` (an update keeps what the record had).
fn initial_twin(current: Option<&Value>, s: &SettingsFlags) -> anyhow::Result<Value> {
    let kept = |pointer: &str| {
        current
            .and_then(|c| c.pointer(pointer))
            .filter(|v| v.is_object())
            .cloned()
            .unwrap_or_else(|| json!({}))
    };
    let tags = match &s.initial_twin_tags {
        Some(text) => twin_collection(Some(text), "--initial-twin-tags")?,
        None => kept("/tags"),
    };
    let desired = match &s.initial_twin_properties {
        Some(text) => twin_collection(Some(text), "--initial-twin-properties")?,
        None => kept("/properties/desired"),
    };
    Ok(json!({ "tags": tags, "properties": { "desired": desired } }))
}

/// A JSON object from a flag (absent or `""`: `{}`), with `null` members removed as az's
/// `dict_clean` does. az's Python-dictionary notation (`"{'a': True}"`) is read too.
pub fn twin_collection(text: Option<&str>, flag: &str) -> anyhow::Result<Value> {
    let Some(text) = text.map(str::trim).filter(|t| !t.is_empty()) else {
        return Ok(json!({}));
    };
    let value: Value = match serde_json::from_str(text) {
        Ok(v) => v,
        Err(e) => serde_json::from_str(&python_literal_to_json(text))
            .with_context(|| format!("{flag} is not JSON ({e}): {text}"))?,
    };
    if !value.is_object() {
        bail!("{flag} must be a JSON object such as '{{\"key\": \"value\"}}', not {text}");
    }
    Ok(without_nulls(value))
}

fn without_nulls(value: Value) -> Value {
    match value {
        Value::Object(map) => Value::Object(
            map.into_iter()
                .filter(|(_, v)| !v.is_null())
                .map(|(k, v)| (k, without_nulls(v)))
                .collect(),
        ),
        other => other,
    }
}

/// Python literal notation (single-quoted strings, `True`, `False`, `None`) rewritten as
/// JSON, which is how az accepts JSON that a Windows shell would mangle.
fn python_literal_to_json(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\'' | '"' => {
                let mut content = String::new();
                while let Some(d) = chars.next() {
                    match d {
                        '\\' => {
                            if let Some(escaped) = chars.next() {
                                match escaped {
                                    'n' => content.push('\n'),
                                    't' => content.push('\t'),
                                    other => content.push(other),
                                }
                            }
                        }
                        d if d == c => break,
                        d => content.push(d),
                    }
                }
                out.push_str(&Value::String(content).to_string());
            }
            c if c.is_ascii_alphabetic() => {
                let mut word = String::from(c);
                while let Some(&d) = chars.peek() {
                    if d.is_ascii_alphanumeric() || d == '_' {
                        word.push(d);
                        chars.next();
                    } else {
                        break;
                    }
                }
                out.push_str(match word.as_str() {
                    "True" => "true",
                    "False" => "false",
                    "None" => "null",
                    other => other,
                });
            }
            c => out.push(c),
        }
    }
    out
}

/// Sets `allocationPolicy`, `iotHubs` and `customAllocationDefinition` from the flags and
/// checks the result as az does: `--hn HOST` is `--ap static --ih HOST`; static needs exactly
/// one hub, custom a webhook and its API version. On `create` (`creating`), `--iot-hubs`
/// needs `--allocation-policy`.
fn apply_allocation(record: &mut Value, s: &SettingsFlags, creating: bool) -> anyhow::Result<()> {
    let hubs: Vec<String> = s
        .iot_hubs
        .iter()
        .flat_map(|h| h.split_whitespace())
        .map(str::to_owned)
        .collect();
    if s.iot_hub_host_name.is_some() && s.allocation_policy.is_some() {
        bail!(
            "--iot-hub-host-name means a static allocation to that hub; with \
             --allocation-policy, name the hubs with --iot-hubs"
        );
    }
    if creating && !hubs.is_empty() && s.allocation_policy.is_none() {
        bail!("--iot-hubs needs --allocation-policy (hashed, geoLatency, static or custom)");
    }
    let Some(map) = record.as_object_mut() else {
        bail!("the enrollment is not a JSON object");
    };
    if let Some(host) = &s.iot_hub_host_name {
        map.insert(
            "allocationPolicy".into(),
            AllocationPolicy::Static.as_str().into(),
        );
        map.insert("iotHubs".into(), json!([host]));
        map.remove("iotHubHostName");
    }
    if !hubs.is_empty() {
        map.insert("iotHubs".into(), json!(hubs));
        map.remove("iotHubHostName");
    }
    if let Some(policy) = s.allocation_policy {
        map.insert("allocationPolicy".into(), policy.as_str().into());
    }
    let policy = map
        .get("allocationPolicy")
        .and_then(Value::as_str)
        .map(str::to_owned);
    let custom_flags = s.webhook_url.is_some() || s.api_version.is_some();
    match policy.as_deref() {
        Some(p) if p.eq_ignore_ascii_case("custom") => {
            let mut definition = map
                .get("customAllocationDefinition")
                .filter(|d| d.is_object())
                .cloned()
                .unwrap_or_else(|| json!({}));
            if let Some(url) = &s.webhook_url {
                definition["webhookUrl"] = url.clone().into();
            }
            if let Some(version) = &s.api_version {
                definition["apiVersion"] = version.clone().into();
            }
            let has = |k: &str| definition[k].as_str().is_some_and(|v| !v.trim().is_empty());
            if !has("webhookUrl") || !has("apiVersion") {
                bail!(
                    "--allocation-policy custom needs --webhook-url and --api-version (the API \
                     version of the enrollment DPS sends the webhook, e.g. 2021-10-01)"
                );
            }
            map.insert("customAllocationDefinition".into(), definition);
        }
        _ if custom_flags => {
            bail!("--webhook-url and --api-version are for --allocation-policy custom");
        }
        Some(p) if p.eq_ignore_ascii_case("static") => {
            let listed = map
                .get("iotHubs")
                .and_then(Value::as_array)
                .map_or(0, Vec::len);
            let named = map
                .get("iotHubHostName")
                .and_then(Value::as_str)
                .is_some_and(|h| !h.is_empty());
            if listed != 1 && !named {
                bail!(
                    "--allocation-policy static needs exactly one hub: --iot-hubs HOST ({listed} \
                     given)"
                );
            }
        }
        _ => {}
    }
    Ok(())
}

#[allow(clippy::print_stderr)]
fn warn(message: &str) {
    eprintln!("warning: {message}");
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::hub::Status;

    #[test]
    fn the_certificate_authority_name_is_set_and_removed() {
        let named = SettingsFlags {
            certificate_authority_name: Some("short-lived".into()),
            ..SettingsFlags::default()
        };
        let policy = json!({"certificateAuthorityName": "short-lived"});
        let body = group_body("g", &CaNameFlags::default(), &named).unwrap();
        assert_eq!(body["clientCertificateIssuancePolicy"], policy);
        let flags = IndividualFlags::default();
        let body = individual_body("d", AttestationType::SymmetricKey, &flags, &named).unwrap();
        assert_eq!(body["clientCertificateIssuancePolicy"], policy);
        let mut record = body.clone();
        update_settings(&mut record, &SettingsFlags::default()).unwrap();
        assert_eq!(record["clientCertificateIssuancePolicy"], policy, "kept");
        let cleared = SettingsFlags {
            certificate_authority_name: Some(String::new()),
            ..SettingsFlags::default()
        };
        update_settings(&mut record, &cleared).unwrap();
        assert!(record.get("clientCertificateIssuancePolicy").is_none());
    }

    #[test]
    fn symmetric_key_enrollments_are_built_as_az_builds_them() {
        let body = individual_body(
            "dev-1",
            AttestationType::SymmetricKey,
            &IndividualFlags::default(),
            &SettingsFlags::default(),
        )
        .unwrap();
        assert_eq!(
            body,
            json!({
                "registrationId": "dev-1",
                "attestation": {"type": "symmetricKey", "symmetricKey": {}},
                "capabilities": {"iotEdge": false},
                "initialTwin": {"tags": {}, "properties": {"desired": {}}},
                "reprovisionPolicy": {"updateHubAssignment": true, "migrateDeviceData": true},
                "optionalDeviceInformation": {},
            })
        );
        let s = SettingsFlags {
            primary_key: Some("cHJpbWFyeQ==".into()),
            initial_twin_tags: Some("{'site': 'lab', 'gone': None}".into()),
            initial_twin_properties: Some(r#"{"fw": {"v": 1.5}}"#.into()),
            provisioning_status: Some(Status::Disabled),
            reprovision_policy: Some(ReprovisionPolicy::Never),
            edge_enabled: Some(true),
            iot_hub_host_name: Some("hub1.example".into()),
            ..SettingsFlags::default()
        };
        let flags = IndividualFlags {
            device_id: Some("device-a".into()),
            ..IndividualFlags::default()
        };
        let body = individual_body("dev-1", AttestationType::SymmetricKey, &flags, &s).unwrap();
        assert_eq!(
            body["attestation"]["symmetricKey"],
            json!({"primaryKey": "cHJpbWFyeQ=="})
        );
        assert_eq!(body["initialTwin"]["tags"], json!({"site": "lab"}));
        assert_eq!(body["initialTwin"]["properties"]["desired"]["fw"]["v"], 1.5);
        assert_eq!(body["provisioningStatus"], "disabled");
        assert_eq!(
            body["reprovisionPolicy"],
            json!({"updateHubAssignment": false, "migrateDeviceData": false})
        );
        assert_eq!(body["capabilities"]["iotEdge"], true);
        assert_eq!(body["deviceId"], "device-a");
        assert_eq!(body["allocationPolicy"], "static");
        assert_eq!(body["iotHubs"], json!(["hub1.example"]));
    }

    #[test]
    fn attestation_flags_must_fit_the_type() {
        let keys = SettingsFlags {
            primary_key: Some("a2V5".into()),
            ..SettingsFlags::default()
        };
        let none = IndividualFlags::default();
        let e = individual_body("d", AttestationType::X509, &none, &keys).unwrap_err();
        assert!(e.to_string().contains("--primary-key"), "{e}");
        let e = individual_body("d", AttestationType::X509, &none, &SettingsFlags::default())
            .unwrap_err();
        assert!(e.to_string().contains("--certificate-path"), "{e}");
        let e = individual_body("d", AttestationType::Tpm, &none, &SettingsFlags::default())
            .unwrap_err();
        assert!(e.to_string().contains("--endorsement-key"), "{e}");
        let ek = IndividualFlags {
            endorsement_key: Some("AToAAQAL".into()),
            ..IndividualFlags::default()
        };
        let tpm =
            individual_body("d", AttestationType::Tpm, &ek, &SettingsFlags::default()).unwrap();
        assert_eq!(
            tpm["attestation"],
            json!({"type": "tpm", "tpm": {"endorsementKey": "AToAAQAL"}})
        );
        let ca = CaNameFlags {
            root_ca_name: Some("myca".into()),
            ..CaNameFlags::default()
        };
        let group = group_body("g", &ca, &SettingsFlags::default()).unwrap();
        assert_eq!(
            group["attestation"],
            json!({"type": "x509", "x509": {"caReferences": {"primary": "myca"}}})
        );
        assert!(group_body("g", &ca, &keys).is_err());
        assert!(check_update_flags("x509", &keys, &RemoveFlags::default(), None, &ca).is_err());
        assert!(
            check_update_flags(
                "symmetricKey",
                &SettingsFlags::default(),
                &RemoveFlags::default(),
                None,
                &ca
            )
            .is_err()
        );
    }

    #[test]
    fn allocation_rules() {
        let mut body = json!({});
        let s = SettingsFlags {
            allocation_policy: Some(AllocationPolicy::Custom),
            webhook_url: Some("https://hook.example/api".into()),
            ..SettingsFlags::default()
        };
        let e = apply_allocation(&mut body, &s, true).unwrap_err();
        assert!(e.to_string().contains("--api-version"), "{e}");
        let s = SettingsFlags {
            api_version: Some("2021-10-01".into()),
            ..s
        };
        apply_allocation(&mut body, &s, true).unwrap();
        assert_eq!(
            body["customAllocationDefinition"],
            json!({"webhookUrl": "https://hook.example/api", "apiVersion": "2021-10-01"})
        );
        // An update of the webhook alone keeps the API version.
        let s = SettingsFlags {
            webhook_url: Some("https://other.example".into()),
            ..SettingsFlags::default()
        };
        apply_allocation(&mut body, &s, false).unwrap();
        assert_eq!(
            body["customAllocationDefinition"]["apiVersion"],
            "2021-10-01"
        );

        let two = SettingsFlags {
            allocation_policy: Some(AllocationPolicy::Static),
            iot_hubs: vec!["a.example b.example".into()],
            ..SettingsFlags::default()
        };
        let e = apply_allocation(&mut json!({}), &two, true).unwrap_err();
        assert!(e.to_string().contains("exactly one hub"), "{e}");
        let hubs = SettingsFlags {
            iot_hubs: vec!["a.example".into()],
            ..SettingsFlags::default()
        };
        assert!(apply_allocation(&mut json!({}), &hubs, true).is_err());
        let mut hashed = json!({"allocationPolicy": "hashed"});
        apply_allocation(&mut hashed, &hubs, false).unwrap();
        assert_eq!(hashed["iotHubs"], json!(["a.example"]));
        let webhook = SettingsFlags {
            webhook_url: Some("https://hook.example".into()),
            ..SettingsFlags::default()
        };
        assert!(apply_allocation(&mut hashed, &webhook, false).is_err());
    }

    #[test]
    fn twin_collections_read_json_and_python_literals() {
        assert_eq!(twin_collection(None, "--tags").unwrap(), json!({}));
        assert_eq!(twin_collection(Some(""), "--tags").unwrap(), json!({}));
        assert_eq!(
            twin_collection(Some("{'a': True, 'b': [1, None], 'c': \"it's\"}"), "--tags").unwrap(),
            json!({"a": true, "b": [1, null], "c": "it's"})
        );
        let e = twin_collection(Some("[1]"), "--tags").unwrap_err();
        assert!(e.to_string().contains("JSON object"), "{e}");
        let e = twin_collection(Some("{nope"), "--tags").unwrap_err();
        assert!(e.to_string().starts_with("--tags is not JSON"), "{e}");
    }

    #[test]
    fn updates_keep_the_twin_parts_they_do_not_name() {
        let current = json!({"tags": {"site": "lab"}, "properties": {"desired": {"fw": 1}}});
        let s = SettingsFlags {
            initial_twin_properties: Some(r#"{"fw": 2}"#.into()),
            ..SettingsFlags::default()
        };
        assert_eq!(
            initial_twin(Some(&current), &s).unwrap(),
            json!({"tags": {"site": "lab"}, "properties": {"desired": {"fw": 2}}})
        );
    }

    #[test]
    fn device_keys_are_derived_from_the_group_key() {
        // base64(HMAC-SHA256(b"key", b"dev1")), as Python's hmac computes it.
        assert_eq!(
            derive_key("a2V5", "dev1").unwrap(),
            "zyV7ZMEdEY/cs3bF16RUv8h6hYG/+VDerN/fOgkF2x4="
        );
        assert!(derive_key("!!", "dev1").is_err());
        assert!(derive_key("a2V5", " ").is_err());
    }
}
