//! The enrollment form, shared by individual enrollments and enrollment groups, for create and
//! edit: every setting of the DPS REST API's enrollment (attestation by symmetric keys, X.509
//! certificates or CA references, or a TPM endorsement key; allocation policy, hubs and custom
//! allocation webhook; reprovisioning; initial twin; IoT Edge; enabled; the issuing CA).
//!
//! The form becomes the REST API's JSON body, and DPS decides (`Dps::create_or_update`). The
//! fields DPS's own rules can name (the id, the keys, the initial twin's JSON) are checked
//! first with those rules, so their refusal appears beside the field and nothing is written.

use ironhub_dps::DpsError;
use ironhub_dps::enrollments::Enrollment;
use ironhub_dps::model::{
    AllocationPolicy, EnrollmentSettings, InitialTwin, SymmetricKeyAttestation,
};
use ironhub_dps::rules;
use maud::{Markup, html};
use serde::Deserialize;
use serde_json::{Map, Value, json};

/// What the enrollment form posts.
#[derive(Debug, Default, Clone, Deserialize)]
pub struct EnrollmentForm {
    #[serde(default)]
    pub id: String,
    #[serde(default)]
    device_id: String,
    /// `symmetricKey`, `x509` or `tpm`.
    #[serde(default)]
    attestation: String,
    #[serde(default)]
    primary_key: String,
    #[serde(default)]
    secondary_key: String,
    #[serde(default)]
    primary_certificate: String,
    #[serde(default)]
    secondary_certificate: String,
    #[serde(default)]
    primary_ca: String,
    #[serde(default)]
    secondary_ca: String,
    #[serde(default)]
    endorsement_key: String,
    #[serde(default)]
    storage_root_key: String,
    #[serde(default)]
    allocation_policy: String,
    #[serde(default)]
    iot_hubs: String,
    #[serde(default)]
    webhook_url: String,
    #[serde(default)]
    webhook_api_version: String,
    /// `migrate` (the default), `reset` or `never`.
    #[serde(default)]
    reprovision: String,
    #[serde(default)]
    initial_twin: String,
    #[serde(default)]
    iot_edge: Option<String>,
    #[serde(default)]
    enabled: Option<String>,
    #[serde(default)]
    issuing_ca: String,
    /// The ETag the edit form showed (absent on create).
    #[serde(default)]
    pub etag: String,
}

/// A refusal the form shows beside one of its fields (or above it when `field` is empty).
#[derive(Debug, Clone)]
pub struct FieldError {
    pub field: &'static str,
    pub error: DpsError,
}

impl FieldError {
    fn at(field: &'static str, error: DpsError) -> FieldError {
        FieldError { field, error }
    }
}

fn given(s: &str) -> Option<&str> {
    Some(s.trim()).filter(|s| !s.is_empty())
}

impl EnrollmentForm {
    /// The form of an existing enrollment (keys and certificates are not shown: left blank,
    /// an update keeps them).
    pub fn of<E: Enrollment>(e: &E) -> EnrollmentForm {
        let s = e.settings();
        let text = |v: &Option<String>| v.clone().unwrap_or_default();
        let x509 = s.attestation.x509.as_ref();
        let cas = x509.and_then(|x| x.ca_references.as_ref());
        let doc = serde_json::to_value(e).unwrap_or_default();
        let reprovision = match s.reprovision_policy {
            Some(p) if !p.update_hub_assignment => "never",
            Some(p) if !p.migrate_device_data => "reset",
            _ => "migrate",
        };
        EnrollmentForm {
            id: e.id().to_owned(),
            device_id: doc["deviceId"].as_str().unwrap_or_default().to_owned(),
            attestation: s.attestation.kind.as_str().to_owned(),
            primary_ca: cas.map(|c| text(&c.primary)).unwrap_or_default(),
            secondary_ca: cas.map(|c| text(&c.secondary)).unwrap_or_default(),
            endorsement_key: s
                .attestation
                .tpm
                .as_ref()
                .map(|t| t.endorsement_key.clone())
                .unwrap_or_default(),
            storage_root_key: s
                .attestation
                .tpm
                .as_ref()
                .and_then(|t| t.storage_root_key.clone())
                .unwrap_or_default(),
            allocation_policy: s
                .allocation_policy
                .map(|p| json_text(&p))
                .unwrap_or_default(),
            iot_hubs: s.iot_hubs.clone().unwrap_or_default().join(", "),
            webhook_url: s
                .custom_allocation_definition
                .as_ref()
                .map(|c| c.webhook_url.clone())
                .unwrap_or_default(),
            webhook_api_version: s
                .custom_allocation_definition
                .as_ref()
                .map(|c| c.api_version.clone())
                .unwrap_or_default(),
            reprovision: reprovision.to_owned(),
            initial_twin: s
                .initial_twin
                .as_ref()
                .and_then(|t| serde_json::to_string_pretty(t).ok())
                .unwrap_or_default(),
            iot_edge: s.iot_edge().then(|| "on".to_owned()),
            enabled: s.is_enabled().then(|| "on".to_owned()),
            issuing_ca: s
                .certificate_authority_name()
                .unwrap_or_default()
                .to_owned(),
            etag: text(&s.etag),
            ..EnrollmentForm::default()
        }
    }

    /// Forgets the keys typed (a form shown again does not send them back).
    pub fn clear_keys(&mut self) {
        self.primary_key.clear();
        self.secondary_key.clear();
    }

    /// The enrollment this form describes, as the REST API's body, after the checks of the
    /// fields DPS's rules name; `id_field` is the body's id (`registrationId`,
    /// `enrollmentGroupId`), `certificates` where X.509 certificates go
    /// (`clientCertificates`, `signingCertificates`).
    pub fn enrollment<E: Enrollment>(
        &self,
        id_field: &str,
        certificates: &str,
    ) -> Result<E, FieldError> {
        let id = self.id.trim();
        E::validate_id(id).map_err(|e| FieldError::at("id", e))?;
        let attestation = match self.attestation.as_str() {
            "" | "symmetricKey" => {
                let mut keys = Map::new();
                for (field, name, value) in [
                    ("primary_key", "primaryKey", &self.primary_key),
                    ("secondary_key", "secondaryKey", &self.secondary_key),
                ] {
                    if let Some(k) = given(value) {
                        // DPS's own check of a supplied key (base64, 16 to 64 bytes).
                        let one = SymmetricKeyAttestation {
                            primary_key: Some(k.to_owned()),
                            secondary_key: Some(k.to_owned()),
                        };
                        rules::symmetric_keys(Some(&one), None)
                            .map_err(|e| FieldError::at(field, e))?;
                        keys.insert(name.into(), json!(k));
                    }
                }
                json!({"type": "symmetricKey", "symmetricKey": keys})
            }
            "x509" => {
                let mut x509 = Map::new();
                let pem = |v: &str| given(v).map(|c| json!({"certificate": c}));
                if given(&self.primary_certificate).is_some()
                    || given(&self.secondary_certificate).is_some()
                {
                    x509.insert(
                        certificates.into(),
                        json!({"primary": pem(&self.primary_certificate), "secondary": pem(&self.secondary_certificate)}),
                    );
                }
                if given(&self.primary_ca).is_some() || given(&self.secondary_ca).is_some() {
                    x509.insert(
                        "caReferences".into(),
                        json!({"primary": given(&self.primary_ca), "secondary": given(&self.secondary_ca)}),
                    );
                }
                json!({"type": "x509", "x509": x509})
            }
            "tpm" => json!({"type": "tpm", "tpm": {
                "endorsementKey": self.endorsement_key.trim(),
                "storageRootKey": given(&self.storage_root_key),
            }}),
            other => {
                return Err(FieldError::at(
                    "attestation",
                    DpsError::BadRequest(format!("Unknown attestation type '{other}'.")),
                ));
            }
        };
        let initial_twin = match given(&self.initial_twin) {
            None => Value::Null,
            Some(text) => {
                let twin: InitialTwin = serde_json::from_str(text).map_err(|e| {
                    FieldError::at(
                        "initial_twin",
                        DpsError::BadRequest(format!(
                            "The initial twin is not valid JSON of the shape {{\"tags\": {{…}}, \"properties\": {{\"desired\": {{…}}}}}}: {e}."
                        )),
                    )
                })?;
                serde_json::to_value(twin).unwrap_or_default()
            }
        };
        let (update, migrate) = match self.reprovision.as_str() {
            "never" => (false, false),
            "reset" => (true, false),
            _ => (true, true),
        };
        let mut body = json!({
            id_field: id,
            "attestation": attestation,
            "capabilities": {"iotEdge": self.iot_edge.is_some()},
            "provisioningStatus": if self.enabled.is_some() { "enabled" } else { "disabled" },
            "reprovisionPolicy": {"updateHubAssignment": update, "migrateDeviceData": migrate},
        });
        let fields = body.as_object_mut().expect("an object");
        if !initial_twin.is_null() {
            fields.insert("initialTwin".into(), initial_twin);
        }
        if let Some(d) = given(&self.device_id) {
            fields.insert("deviceId".into(), json!(d));
        }
        if let Some(p) = given(&self.allocation_policy) {
            fields.insert("allocationPolicy".into(), json!(p));
        }
        let hubs: Vec<&str> = self
            .iot_hubs
            .split([',', ' ', '\n'])
            .map(str::trim)
            .filter(|h| !h.is_empty())
            .collect();
        if !hubs.is_empty() {
            fields.insert("iotHubs".into(), json!(hubs));
        }
        if let Some(url) = given(&self.webhook_url) {
            fields.insert(
                "customAllocationDefinition".into(),
                json!({"webhookUrl": url, "apiVersion": given(&self.webhook_api_version).unwrap_or("2021-10-01")}),
            );
        }
        if let Some(ca) = given(&self.issuing_ca) {
            fields.insert(
                "clientCertificateIssuancePolicy".into(),
                json!({"certificateAuthorityName": ca}),
            );
        }
        serde_json::from_value(body).map_err(|e| {
            FieldError::at(
                "",
                DpsError::BadRequest(format!("The enrollment is not valid: {e}.")),
            )
        })
    }
}

/// A value's JSON text without quotes (how the REST API spells an enum).
fn json_text(value: &impl serde::Serialize) -> String {
    match serde_json::to_value(value) {
        Ok(Value::String(s)) => s,
        Ok(other) => other.to_string(),
        Err(_) => String::new(),
    }
}

/// What the form looks like for one kind of enrollment.
pub struct FormKind {
    /// The label of the id field.
    pub id_label: &'static str,
    /// Whether the id may be typed (create) or is fixed (edit).
    pub editing: bool,
    /// Individual enrollments take a device id and TPM attestation.
    pub individual: bool,
}

/// `error`'s message, when it belongs beside `field` (as `<field>-error`).
pub fn beside(error: Option<&FieldError>, field: &str) -> Markup {
    html! {
        @if let Some(e) = error.filter(|e| e.field == field) {
            span.field-error id={ (field) "-error" } role="alert" { (e.error.to_string()) }
        }
    }
}

/// The form's fields (without `<form>`, CSRF and button), with `error` beside its field.
pub fn fields(f: &EnrollmentForm, kind: &FormKind, error: Option<&FieldError>) -> Markup {
    let beside = |field: &str| beside(error, field);
    let policy = |value: &str, label: &str| {
        html! { option value=(value) selected[f.allocation_policy == value] { (label) } }
    };
    let attestation = |value: &str, label: &str| {
        html! { option value=(value) selected[f.attestation == value || (value == "symmetricKey" && f.attestation.is_empty())] { (label) } }
    };
    let reprovision = |value: &str, label: &str| {
        html! { option value=(value) selected[f.reprovision == value || (value == "migrate" && f.reprovision.is_empty())] { (label) } }
    };
    let creating = !kind.editing;
    html! {
        @if let Some(e) = error.filter(|e| e.field.is_empty()) {
            p.notice.error role="alert" { (e.error.to_string()) }
        }
        label for="id" { (kind.id_label) }
        @if creating {
            input #id type="text" name="id" required value=(f.id) aria-describedby="id-error";
        } @else {
            input #id type="text" name="id" readonly value=(f.id);
        }
        (beside("id"))
        @if kind.individual {
            label for="device_id" { "IoT Hub device id (empty: the registration id)" }
            input #device_id type="text" name="device_id" value=(f.device_id);
        }
        fieldset {
            legend { "Attestation" }
            label for="attestation" { "Mechanism" }
            select #attestation name="attestation" {
                (attestation("symmetricKey", "Symmetric key"))
                (attestation("x509", "X.509 certificates"))
                @if kind.individual { (attestation("tpm", "TPM endorsement key")) }
            }
            (beside("attestation"))
            label for="primary_key" { "Primary key (base64; empty: generated" @if kind.editing { ", or kept" } ")" }
            input #primary_key type="password" name="primary_key" autocomplete="off" value=(f.primary_key);
            (beside("primary_key"))
            label for="secondary_key" { "Secondary key (base64; empty: generated" @if kind.editing { ", or kept" } ")" }
            input #secondary_key type="password" name="secondary_key" autocomplete="off" value=(f.secondary_key);
            (beside("secondary_key"))
            label for="primary_certificate" { (if kind.individual { "Primary device certificate (PEM)" } else { "Primary signing certificate (PEM)" }) }
            textarea #primary_certificate name="primary_certificate" placeholder="-----BEGIN CERTIFICATE-----" { (f.primary_certificate) }
            label for="secondary_certificate" { (if kind.individual { "Secondary device certificate (PEM)" } else { "Secondary signing certificate (PEM)" }) }
            textarea #secondary_certificate name="secondary_certificate" { (f.secondary_certificate) }
            label for="primary_ca" { "Primary CA reference (a verified DPS CA certificate's name)" }
            input #primary_ca type="text" name="primary_ca" value=(f.primary_ca);
            label for="secondary_ca" { "Secondary CA reference" }
            input #secondary_ca type="text" name="secondary_ca" value=(f.secondary_ca);
            @if kind.individual {
                label for="endorsement_key" { "TPM endorsement key (base64)" }
                textarea #endorsement_key name="endorsement_key" { (f.endorsement_key) }
                label for="storage_root_key" { "TPM storage root key (base64, optional)" }
                textarea #storage_root_key name="storage_root_key" { (f.storage_root_key) }
            }
        }
        fieldset {
            legend { "Allocation" }
            label for="allocation_policy" { "Allocation policy" }
            select #allocation_policy name="allocation_policy" {
                (policy("", "The DPS default (evenly weighted)"))
                (policy("hashed", "Evenly weighted distribution"))
                (policy("geoLatency", "Lowest latency"))
                (policy("static", "Static (the one hub below)"))
                (policy("custom", "Custom (webhook)"))
            }
            label for="iot_hubs" { "Linked hubs to choose from (host names, comma-separated; empty: all)" }
            input #iot_hubs type="text" name="iot_hubs" value=(f.iot_hubs);
            label for="webhook_url" { "Custom allocation webhook URL" }
            input #webhook_url type="text" name="webhook_url" value=(f.webhook_url);
            label for="webhook_api_version" { "Webhook API version" }
            input #webhook_api_version type="text" name="webhook_api_version" placeholder="2021-10-01" value=(f.webhook_api_version);
            label for="reprovision" { "When a device registers again" }
            select #reprovision name="reprovision" {
                (reprovision("migrate", "Re-provision and migrate its data"))
                (reprovision("reset", "Re-provision and reset to the initial config"))
                (reprovision("never", "Never re-provision"))
            }
            label for="issuing_ca" { "Issuing CA for device certificates (optional)" }
            input #issuing_ca type="text" name="issuing_ca" value=(f.issuing_ca);
        }
        label for="initial_twin" { "Initial twin (JSON: " code { "{\"tags\": {…}, \"properties\": {\"desired\": {…}}}" } ")" }
        textarea #initial_twin name="initial_twin" aria-describedby="initial_twin-error" { (f.initial_twin) }
        (beside("initial_twin"))
        label.check { input #iot_edge type="checkbox" name="iot_edge" checked[f.iot_edge.is_some()]; " IoT Edge device" }
        label.check { input #enabled type="checkbox" name="enabled" checked[f.enabled.is_some()]; " Enabled" }
        input type="hidden" name="etag" value=(f.etag);
    }
}

/// A new form: enabled, keys generated.
pub fn blank() -> EnrollmentForm {
    EnrollmentForm {
        enabled: Some("on".into()),
        ..EnrollmentForm::default()
    }
}

/// The settings shown on an enrollment's page.
pub fn summary(s: &EnrollmentSettings) -> Markup {
    html! {
        p { "Attestation: " b #attestation-type { (s.attestation.kind.as_str()) } }
        p { "Status: " b #provisioning-status { (if s.is_enabled() { "enabled" } else { "disabled" }) }
            " · IoT Edge: " (if s.iot_edge() { "yes" } else { "no" }) }
        p { "Allocation: " (policy_name(s.allocation_policy))
            @if let Some(hubs) = &s.iot_hubs { " over " (hubs.join(", ")) } }
        @if let Some(c) = &s.custom_allocation_definition { p { "Webhook: " code { (c.webhook_url) } " (" (c.api_version) ")" } }
        @if let Some(cas) = s.attestation.x509.as_ref().and_then(|x| x.ca_references.as_ref()) {
            p { "CA references: " (cas.primary.as_deref().unwrap_or("—")) ", " (cas.secondary.as_deref().unwrap_or("—")) }
        }
        @if let Some(x) = &s.attestation.x509 {
            @for (which, c) in [("client", &x.client_certificates), ("signing", &x.signing_certificates)] {
                @if let Some(c) = c {
                    @for (slot, cert) in [("primary", &c.primary), ("secondary", &c.secondary)] {
                        @if let Some(info) = cert.as_ref().and_then(|c| c.info.as_ref()) {
                            p { (slot) " " (which) " certificate: " (info.subject_name) " · SHA-256 " code { (info.sha256_thumbprint) } }
                        }
                    }
                }
            }
        }
        @if let Some(t) = &s.attestation.tpm { p { "TPM endorsement key: " code.tpm { (t.endorsement_key.get(..24).unwrap_or(&t.endorsement_key)) "…" } } }
        p { "Created " (s.created_date_time_utc.map(|t| t.to_rfc3339()).unwrap_or_default())
            " · updated " (s.last_updated_date_time_utc.map(|t| t.to_rfc3339()).unwrap_or_default())
            " · ETag " (s.etag.as_deref().unwrap_or("")) }
    }
}

/// An allocation policy as the list shows it.
pub fn policy_name(p: Option<AllocationPolicy>) -> String {
    p.map_or_else(|| "default".to_owned(), |p| json_text(&p))
}
