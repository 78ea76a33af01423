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
use ironhub_wire::dps::{
    AllocationPolicy as WireAllocationPolicy, AttestationMechanism,
    AttestationType as AttestationKind, ClientCertificateIssuancePolicy, DeviceCapabilities,
    EnrollmentGroup, EnrollmentRecord, EnrollmentSettings, IndividualEnrollment, InitialTwin,
    InitialTwinProperties, ProvisioningStatus, ReprovisionPolicy as WireReprovisionPolicy,
    TpmAttestation, X509Attestation, X509CaReferences, X509CertificateWithInfo, X509Certificates,
};
use serde_json::{Map, Value};

use super::certificate::read_certificate;
use super::dps::{
    AttestationType, CaNameFlags, EnrollmentCreateArgs, EnrollmentUpdateArgs, GroupCreateArgs,
    GroupUpdateArgs, IndividualFlags, RemoveFlags, ReprovisionPolicy, SettingsFlags,
};
use super::hub::Status;

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
    let written = client.put_enrollment(id, &body, None).await?;
    Ok(serde_json::to_value(written)?)
}

/// `enrollment-group create`
pub async fn create_group(client: &DpsClient, args: &GroupCreateArgs) -> anyhow::Result<Value> {
    let id = &args.id.enrollment_id;
    let body = group_body(id, &args.ca, &args.settings)?;
    let written = client.put_enrollment(id, &body, None).await?;
    Ok(serde_json::to_value(written)?)
}

/// `enrollment show` and `enrollment-group show`: the record as DPS answers it; with
/// `--show-keys`, a symmetric key record's attestation with its keys.
pub async fn show(
    client: &DpsClient,
    kind: EnrollmentKind,
    id: &str,
    show_keys: Option<bool>,
) -> anyhow::Result<Value> {
    match kind {
        EnrollmentKind::Individual => {
            show_record::<IndividualEnrollment>(client, kind, id, show_keys).await
        }
        EnrollmentKind::Group => show_record::<EnrollmentGroup>(client, kind, id, show_keys).await,
    }
}

async fn show_record<E: EnrollmentRecord>(
    client: &DpsClient,
    kind: EnrollmentKind,
    id: &str,
    show_keys: Option<bool>,
) -> anyhow::Result<Value> {
    let mut record: E = client.get_enrollment(id).await?;
    if show_keys == Some(true) {
        let attestation = record.settings().attestation.kind;
        if attestation == AttestationKind::SymmetricKey {
            record.settings_mut().attestation = client.attestation_mechanism(kind, id).await?;
        } else {
            warn(&format!(
                "--show-keys: '{id}' attests by '{}'; only symmetric key attestation has keys \
                 to show",
                attestation.as_str()
            ));
        }
    }
    Ok(serde_json::to_value(record)?)
}

/// `enrollment update`
pub async fn update_individual(
    client: &DpsClient,
    args: &EnrollmentUpdateArgs,
) -> anyhow::Result<Value> {
    let kind = EnrollmentKind::Individual;
    let id = &args.id.enrollment_id;
    let s = &args.settings;
    let mut record: IndividualEnrollment = client.get_enrollment(id).await?;
    let attestation = record.settings.attestation.kind;
    let ek = args.individual.endorsement_key.as_deref();
    check_update_flags(attestation, s, &args.remove, ek, &CaNameFlags::default())?;
    let mechanism = &mut record.settings.attestation;
    match attestation {
        AttestationKind::Tpm => {
            if let Some(ek) = ek {
                mechanism.tpm.get_or_insert_default().endorsement_key = ek.to_owned();
            }
        }
        AttestationKind::X509 => {
            let slots = &mut mechanism.x509.get_or_insert_default().client_certificates;
            update_certificates(slots, s, &args.remove)?;
        }
        AttestationKind::SymmetricKey => {
            *mechanism = client.attestation_mechanism(kind, id).await?;
            set_keys(mechanism, s);
        }
        AttestationKind::None => {}
    }
    let info = &args.individual;
    if let Some(device_id) = &info.device_id {
        record.device_id = Some(device_id.clone());
    }
    if let Some(text) = &info.device_information {
        record.optional_device_information = Some(Value::Object(twin_collection(
            Some(text),
            "--device-information",
        )?));
    }
    // Read-only: the device's registration is not the client's to write.
    record.registration_state = None;
    update_settings(&mut record.settings, s)?;
    let etag = args.etag.as_deref().unwrap_or("*");
    let written = client.put_enrollment(id, &record, Some(etag)).await?;
    Ok(serde_json::to_value(written)?)
}

/// `enrollment-group update`
pub async fn update_group(client: &DpsClient, args: &GroupUpdateArgs) -> anyhow::Result<Value> {
    let kind = EnrollmentKind::Group;
    let id = &args.id.enrollment_id;
    let s = &args.settings;
    let mut record: EnrollmentGroup = client.get_enrollment(id).await?;
    let attestation = record.settings.attestation.kind;
    check_update_flags(attestation, s, &args.remove, None, &args.ca)?;
    let mechanism = &mut record.settings.attestation;
    match attestation {
        AttestationKind::SymmetricKey => {
            *mechanism = client.attestation_mechanism(kind, id).await?;
            set_keys(mechanism, s);
        }
        AttestationKind::X509 => update_group_x509(
            mechanism.x509.get_or_insert_default(),
            s,
            &args.ca,
            &args.remove,
        )?,
        AttestationKind::Tpm | AttestationKind::None => {}
    }
    update_settings(&mut record.settings, s)?;
    let etag = args.etag.as_deref().unwrap_or("*");
    let written = client.put_enrollment(id, &record, Some(etag)).await?;
    Ok(serde_json::to_value(written)?)
}

/// The body of `PUT /enrollments/{id}` for `enrollment create`.
pub fn individual_body(
    id: &str,
    attestation_type: AttestationType,
    individual: &IndividualFlags,
    s: &SettingsFlags,
) -> anyhow::Result<IndividualEnrollment> {
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
            AttestationMechanism {
                kind: AttestationKind::Tpm,
                tpm: Some(TpmAttestation {
                    endorsement_key: ek.to_owned(),
                    storage_root_key: None,
                }),
                ..AttestationMechanism::default()
            }
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
            x509_mechanism(X509Attestation {
                client_certificates: Some(certificate_slots(s)?),
                ..X509Attestation::default()
            })
        }
        AttestationType::SymmetricKey => {
            refuse_certificates(certificates, "symmetricKey")?;
            refuse_endorsement_key(ek, "symmetricKey")?;
            symmetric_key(s)
        }
    };
    let mut body = IndividualEnrollment {
        registration_id: id.to_owned(),
        device_id: individual.device_id.clone(),
        registration_state: None,
        settings: new_settings(attestation, s)?,
        optional_device_information: Some(Value::Object(twin_collection(
            individual.device_information.as_deref(),
            "--device-information",
        )?)),
    };
    apply_allocation(&mut body.settings, s, true)?;
    apply_issuance_policy(&mut body.settings, s);
    Ok(body)
}

/// The body of `PUT /enrollmentGroups/{id}` for `enrollment-group create`: X.509 with signing
/// certificates (`--cp`) or CA references (`--cn`), else symmetric key.
pub fn group_body(
    id: &str,
    ca: &CaNameFlags,
    s: &SettingsFlags,
) -> anyhow::Result<EnrollmentGroup> {
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
        x509_mechanism(if certificates {
            X509Attestation {
                signing_certificates: Some(certificate_slots(s)?),
                ..X509Attestation::default()
            }
        } else {
            X509Attestation {
                ca_references: Some(X509CaReferences {
                    primary: ca.root_ca_name.clone(),
                    secondary: ca.secondary_root_ca_name.clone(),
                }),
                ..X509Attestation::default()
            }
        })
    } else {
        symmetric_key(s)
    };
    let mut body = EnrollmentGroup {
        enrollment_group_id: id.to_owned(),
        settings: new_settings(attestation, s)?,
    };
    apply_allocation(&mut body.settings, s, true)?;
    apply_issuance_policy(&mut body.settings, s);
    Ok(body)
}

/// The settings `create` always sends, as az sends them: capabilities, the initial twin and
/// the reprovisioning policy, and the provisioning status when given.
fn new_settings(
    attestation: AttestationMechanism,
    s: &SettingsFlags,
) -> anyhow::Result<EnrollmentSettings> {
    Ok(EnrollmentSettings {
        capabilities: Some(DeviceCapabilities {
            iot_edge: s.edge_enabled.unwrap_or(false),
        }),
        initial_twin: Some(initial_twin(None, s)?),
        reprovision_policy: Some(reprovision_policy(s.reprovision_policy)),
        provisioning_status: s.provisioning_status.map(provisioning_status),
        ..EnrollmentSettings::new(attestation)
    })
}

fn x509_mechanism(x509: X509Attestation) -> AttestationMechanism {
    AttestationMechanism {
        kind: AttestationKind::X509,
        x509: Some(x509),
        ..AttestationMechanism::default()
    }
}

fn symmetric_key(s: &SettingsFlags) -> AttestationMechanism {
    AttestationMechanism::symmetric_key(s.primary_key.as_deref(), s.secondary_key.as_deref())
}

fn set_keys(attestation: &mut AttestationMechanism, s: &SettingsFlags) {
    let keys = attestation.symmetric_key.get_or_insert_default();
    if let Some(k) = &s.primary_key {
        keys.primary_key = Some(k.clone());
    }
    if let Some(k) = &s.secondary_key {
        keys.secondary_key = Some(k.clone());
    }
}

/// A certificate slot holding the certificate at `path`, read as az reads it (PEM text, or
/// base64 of DER).
fn certificate_slot(path: &std::path::Path) -> anyhow::Result<X509CertificateWithInfo> {
    Ok(X509CertificateWithInfo {
        certificate: Some(read_certificate(path)?),
        info: None,
    })
}

/// `{"primary": {"certificate": …}, "secondary": …}` from `--cp` and `--scp`.
fn certificate_slots(s: &SettingsFlags) -> anyhow::Result<X509Certificates> {
    Ok(X509Certificates {
        primary: s
            .certificate_path
            .as_deref()
            .map(certificate_slot)
            .transpose()?,
        secondary: s
            .secondary_certificate_path
            .as_deref()
            .map(certificate_slot)
            .transpose()?,
    })
}

/// Changes a pair of certificate slots as `--rc`, `--rsc`, `--cp` and `--scp` say. A slot
/// read back without its certificate (DPS shows only its `info`) keeps the stored one.
fn update_certificates(
    slots: &mut Option<X509Certificates>,
    s: &SettingsFlags,
    remove: &RemoveFlags,
) -> anyhow::Result<()> {
    let slots = slots.get_or_insert_default();
    if remove.remove_certificate == Some(true) {
        slots.primary = None;
    }
    if remove.remove_secondary_certificate == Some(true) {
        slots.secondary = None;
    }
    if let Some(path) = &s.certificate_path {
        slots.primary = Some(certificate_slot(path)?);
    }
    if let Some(path) = &s.secondary_certificate_path {
        slots.secondary = Some(certificate_slot(path)?);
    }
    Ok(())
}

/// An X.509 group's update: new signing certificates or CA names replace what the group had
/// of that kind (switching between the two kinds replaces the attestation).
fn update_group_x509(
    x509: &mut X509Attestation,
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
    let has_signing = x509.signing_certificates.is_some();
    let has_refs = x509.ca_references.is_some();
    if cas || (!certificates && has_refs) {
        if !has_refs {
            *x509 = X509Attestation {
                ca_references: Some(X509CaReferences::default()),
                ..X509Attestation::default()
            };
        }
        let refs = x509.ca_references.get_or_insert_default();
        if remove.remove_certificate == Some(true) {
            refs.primary = None;
        }
        if remove.remove_secondary_certificate == Some(true) {
            refs.secondary = None;
        }
        if let Some(name) = &ca.root_ca_name {
            refs.primary = Some(name.clone());
        }
        if let Some(name) = &ca.secondary_root_ca_name {
            refs.secondary = Some(name.clone());
        }
        return Ok(());
    }
    if certificates && !has_signing {
        *x509 = X509Attestation {
            signing_certificates: Some(X509Certificates::default()),
            ..X509Attestation::default()
        };
    }
    update_certificates(&mut x509.signing_certificates, s, remove)
}

/// Refuses flags the record's attestation has no use for (az's
/// `_validate_arguments_for_attestation_mechanism`, plus the same rule for groups).
fn check_update_flags(
    attestation: AttestationKind,
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
        AttestationKind::Tpm => {
            refuse_keys(keys, "tpm")?;
            refuse_certificates(certificates, "tpm")
        }
        AttestationKind::X509 => {
            refuse_keys(keys, "x509")?;
            refuse_endorsement_key(endorsement_key, "x509")
        }
        AttestationKind::SymmetricKey => {
            refuse_certificates(certificates, "symmetricKey")?;
            refuse_endorsement_key(endorsement_key, "symmetricKey")
        }
        AttestationKind::None => Ok(()),
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
fn update_settings(settings: &mut EnrollmentSettings, s: &SettingsFlags) -> anyhow::Result<()> {
    if let Some(status) = s.provisioning_status {
        settings.provisioning_status = Some(provisioning_status(status));
    }
    if s.reprovision_policy.is_some() {
        settings.reprovision_policy = Some(reprovision_policy(s.reprovision_policy));
    }
    settings.initial_twin = Some(initial_twin(settings.initial_twin.as_ref(), s)?);
    apply_allocation(settings, s, false)?;
    if let Some(edge) = s.edge_enabled {
        settings.capabilities = Some(DeviceCapabilities { iot_edge: edge });
    }
    apply_issuance_policy(settings, s);
    Ok(())
}

/// `--certificate-authority-name`: the enrollment's `clientCertificateIssuancePolicy` (an
/// empty name removes it).
fn apply_issuance_policy(settings: &mut EnrollmentSettings, s: &SettingsFlags) {
    if let Some(name) = s.certificate_authority_name.as_deref().map(str::trim) {
        settings.client_certificate_issuance_policy =
            (!name.is_empty()).then(|| ClientCertificateIssuancePolicy {
                certificate_authority_name: Some(name.to_owned()),
            });
    }
}

fn provisioning_status(status: Status) -> ProvisioningStatus {
    match status {
        Status::Enabled => ProvisioningStatus::Enabled,
        Status::Disabled => ProvisioningStatus::Disabled,
    }
}

/// `{"updateHubAssignment", "migrateDeviceData"}` as az maps `--reprovision-policy` (its
/// default, when none is given, is re-provision and migrate).
pub fn reprovision_policy(policy: Option<ReprovisionPolicy>) -> WireReprovisionPolicy {
    let (update, migrate) = match policy {
        None | Some(ReprovisionPolicy::ReprovisionAndMigrateData) => (true, true),
        Some(ReprovisionPolicy::ReprovisionAndResetData) => (true, false),
        Some(ReprovisionPolicy::Never) => (false, false),
    };
    WireReprovisionPolicy {
        update_hub_assignment: update,
        migrate_device_data: migrate,
    }
}

/// `{"tags": {…}, "properties": {"desired": {…}}}`: each part from its flag when given, else
/// from `current` (an update keeps what the record had).
fn initial_twin(current: Option<&InitialTwin>, s: &SettingsFlags) -> anyhow::Result<InitialTwin> {
    let tags = match &s.initial_twin_tags {
        Some(text) => twin_collection(Some(text), "--initial-twin-tags")?,
        None => current.and_then(|c| c.tags.clone()).unwrap_or_default(),
    };
    let desired = match &s.initial_twin_properties {
        Some(text) => twin_collection(Some(text), "--initial-twin-properties")?,
        None => current
            .and_then(|c| c.properties.as_ref())
            .and_then(|p| p.desired.clone())
            .unwrap_or_default(),
    };
    Ok(InitialTwin {
        tags: Some(tags),
        properties: Some(InitialTwinProperties {
            desired: Some(desired),
        }),
    })
}

/// A JSON object from a flag (absent or `""`: `{}`), with `null` members removed as az's
/// `dict_clean` does. az's Python-dictionary notation (`"{'a': True}"`) is read too.
pub fn twin_collection(text: Option<&str>, flag: &str) -> anyhow::Result<Map<String, Value>> {
    let Some(text) = text.map(str::trim).filter(|t| !t.is_empty()) else {
        return Ok(Map::new());
    };
    let value: Value = match serde_json::from_str(text) {
        Ok(v) => v,
        Err(e) => serde_json::from_str(&python_literal_to_json(text))
            .with_context(|| format!("{flag} is not JSON ({e}): {text}"))?,
    };
    let Value::Object(map) = value else {
        bail!("{flag} must be a JSON object such as '{{\"key\": \"value\"}}', not {text}");
    };
    Ok(without_nulls(map))
}

fn without_nulls(map: Map<String, Value>) -> Map<String, Value> {
    map.into_iter()
        .filter(|(_, v)| !v.is_null())
        .map(|(k, v)| match v {
            Value::Object(inner) => (k, Value::Object(without_nulls(inner))),
            other => (k, other),
        })
        .collect()
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
fn apply_allocation(
    settings: &mut EnrollmentSettings,
    s: &SettingsFlags,
    creating: bool,
) -> anyhow::Result<()> {
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
    if let Some(host) = &s.iot_hub_host_name {
        settings.allocation_policy = Some(WireAllocationPolicy::Static);
        settings.iot_hubs = Some(vec![host.clone()]);
        settings.iot_hub_host_name = None;
    }
    if !hubs.is_empty() {
        settings.iot_hubs = Some(hubs);
        settings.iot_hub_host_name = None;
    }
    if let Some(policy) = s.allocation_policy {
        settings.allocation_policy = Some(policy.wire());
    }
    let custom_flags = s.webhook_url.is_some() || s.api_version.is_some();
    match settings.allocation_policy {
        Some(WireAllocationPolicy::Custom) => {
            let definition = settings
                .custom_allocation_definition
                .get_or_insert_default();
            if let Some(url) = &s.webhook_url {
                definition.webhook_url.clone_from(url);
            }
            if let Some(version) = &s.api_version {
                definition.api_version.clone_from(version);
            }
            let has = |v: &str| !v.trim().is_empty();
            if !has(&definition.webhook_url) || !has(&definition.api_version) {
                bail!(
                    "--allocation-policy custom needs --webhook-url and --api-version (the API \
                     version of the enrollment DPS sends the webhook, e.g. 2021-10-01)"
                );
            }
        }
        _ if custom_flags => {
            bail!("--webhook-url and --api-version are for --allocation-policy custom");
        }
        Some(WireAllocationPolicy::Static) => {
            let listed = settings.iot_hubs.as_ref().map_or(0, Vec::len);
            let named = settings
                .iot_hub_host_name
                .as_deref()
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
    use crate::cli::dps::AllocationPolicy;
    use serde_json::json;

    fn json_of<T: serde::Serialize>(value: &T) -> Value {
        serde_json::to_value(value).unwrap()
    }

    fn blank() -> EnrollmentSettings {
        EnrollmentSettings::new(AttestationMechanism::default())
    }

    #[test]
    fn the_certificate_authority_name_is_set_and_removed() {
        let named = SettingsFlags {
            certificate_authority_name: Some("short-lived".into()),
            ..SettingsFlags::default()
        };
        let policy = json!({"certificateAuthorityName": "short-lived"});
        let group = group_body("g", &CaNameFlags::default(), &named).unwrap();
        assert_eq!(json_of(&group)["clientCertificateIssuancePolicy"], policy);
        let flags = IndividualFlags::default();
        let body = individual_body("d", AttestationType::SymmetricKey, &flags, &named).unwrap();
        assert_eq!(json_of(&body)["clientCertificateIssuancePolicy"], policy);
        let mut settings = body.settings;
        update_settings(&mut settings, &SettingsFlags::default()).unwrap();
        assert_eq!(
            settings.certificate_authority_name(),
            Some("short-lived"),
            "kept"
        );
        let cleared = SettingsFlags {
            certificate_authority_name: Some(String::new()),
            ..SettingsFlags::default()
        };
        update_settings(&mut settings, &cleared).unwrap();
        assert!(settings.client_certificate_issuance_policy.is_none());
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
            json_of(&body),
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
        let body =
            json_of(&individual_body("dev-1", AttestationType::SymmetricKey, &flags, &s).unwrap());
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
        let tpm = json_of(
            &individual_body("d", AttestationType::Tpm, &ek, &SettingsFlags::default()).unwrap(),
        );
        assert_eq!(
            tpm["attestation"],
            json!({"type": "tpm", "tpm": {"endorsementKey": "AToAAQAL"}})
        );
        let ca = CaNameFlags {
            root_ca_name: Some("myca".into()),
            ..CaNameFlags::default()
        };
        let group = json_of(&group_body("g", &ca, &SettingsFlags::default()).unwrap());
        assert_eq!(
            group["attestation"],
            json!({"type": "x509", "x509": {"caReferences": {"primary": "myca"}}})
        );
        assert!(group_body("g", &ca, &keys).is_err());
        assert!(
            check_update_flags(
                AttestationKind::X509,
                &keys,
                &RemoveFlags::default(),
                None,
                &ca
            )
            .is_err()
        );
        assert!(
            check_update_flags(
                AttestationKind::SymmetricKey,
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
        let mut body = blank();
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
            json_of(&body)["customAllocationDefinition"],
            json!({"webhookUrl": "https://hook.example/api", "apiVersion": "2021-10-01"})
        );
        // An update of the webhook alone keeps the API version.
        let s = SettingsFlags {
            webhook_url: Some("https://other.example".into()),
            ..SettingsFlags::default()
        };
        apply_allocation(&mut body, &s, false).unwrap();
        assert_eq!(
            json_of(&body)["customAllocationDefinition"]["apiVersion"],
            "2021-10-01"
        );

        let two = SettingsFlags {
            allocation_policy: Some(AllocationPolicy::Static),
            iot_hubs: vec!["a.example b.example".into()],
            ..SettingsFlags::default()
        };
        let e = apply_allocation(&mut blank(), &two, true).unwrap_err();
        assert!(e.to_string().contains("exactly one hub"), "{e}");
        let hubs = SettingsFlags {
            iot_hubs: vec!["a.example".into()],
            ..SettingsFlags::default()
        };
        assert!(apply_allocation(&mut blank(), &hubs, true).is_err());
        let mut hashed = EnrollmentSettings {
            allocation_policy: Some(WireAllocationPolicy::Hashed),
            ..blank()
        };
        apply_allocation(&mut hashed, &hubs, false).unwrap();
        assert_eq!(json_of(&hashed)["iotHubs"], json!(["a.example"]));
        let webhook = SettingsFlags {
            webhook_url: Some("https://hook.example".into()),
            ..SettingsFlags::default()
        };
        assert!(apply_allocation(&mut hashed, &webhook, false).is_err());
    }

    #[test]
    fn twin_collections_read_json_and_python_literals() {
        assert_eq!(
            json_of(&twin_collection(None, "--tags").unwrap()),
            json!({})
        );
        assert_eq!(
            json_of(&twin_collection(Some(""), "--tags").unwrap()),
            json!({})
        );
        assert_eq!(
            json_of(
                &twin_collection(Some("{'a': True, 'b': [1, None], 'c': \"it's\"}"), "--tags")
                    .unwrap()
            ),
            json!({"a": true, "b": [1, null], "c": "it's"})
        );
        let e = twin_collection(Some("[1]"), "--tags").unwrap_err();
        assert!(e.to_string().contains("JSON object"), "{e}");
        let e = twin_collection(Some("{nope"), "--tags").unwrap_err();
        assert!(e.to_string().starts_with("--tags is not JSON"), "{e}");
    }

    #[test]
    fn updates_keep_the_twin_parts_they_do_not_name() {
        let current: InitialTwin = serde_json::from_value(
            json!({"tags": {"site": "lab"}, "properties": {"desired": {"fw": 1}}}),
        )
        .unwrap();
        let s = SettingsFlags {
            initial_twin_properties: Some(r#"{"fw": 2}"#.into()),
            ..SettingsFlags::default()
        };
        assert_eq!(
            json_of(&initial_twin(Some(&current), &s).unwrap()),
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
