//! `ironhub dps enrollment …`: individual enrollments and their device's registration, with
//! the flags of `az iot dps enrollment` (the bodies are built in `enrollment_body`).

use clap::{Args, Subcommand};
use ironhub_client::{DpsClient, EnrollmentKind};
use ironhub_wire::dps::{AttestationType as AttestationKind, IndividualEnrollment};
use serde_json::Value;

use super::common::{EtagArgs, ShowArgs, TopArgs, etag_or_any, top};
use super::enrollment_body::{
    self, AttestationType, CaNameFlags, IndividualFlags, RemoveFlags, SettingsFlags,
    check_update_flags, individual_body, set_keys, twin_collection, update_certificates,
    update_settings,
};

/// `ironhub dps enrollment <command>`
#[derive(Debug, Subcommand)]
pub enum EnrollmentCommand {
    /// Create an individual enrollment.
    Create(EnrollmentCreateArgs),
    /// Get an individual enrollment (with --show-keys, its symmetric keys too).
    Show(ShowArgs<EnrollmentIdArg>),
    /// List the individual enrollments.
    List(TopArgs),
    /// Update an individual enrollment (only what the flags name changes).
    Update(EnrollmentUpdateArgs),
    /// Delete an individual enrollment.
    Delete(EtagArgs<EnrollmentIdArg>),
    /// Manage the registration of an individual enrollment's device.
    Registration {
        #[command(subcommand)]
        command: EnrollmentRegistrationCommand,
    },
}

/// `ironhub dps enrollment registration <command>`
#[derive(Debug, Subcommand)]
pub enum EnrollmentRegistrationCommand {
    /// Get the device's registration.
    Show(EnrollmentIdArg),
    /// Delete the device's registration (the device may register again).
    Delete(EtagArgs<EnrollmentIdArg>),
}

/// `--enrollment-id/--eid`: an individual enrollment (its registration id).
#[derive(Debug, Clone, Args)]
pub struct EnrollmentIdArg {
    /// The individual enrollment's id (the device's registration id).
    #[arg(long = "enrollment-id", visible_alias = "eid")]
    pub enrollment_id: String,
}

/// `enrollment create`
#[derive(Debug, Clone, Args)]
pub struct EnrollmentCreateArgs {
    #[command(flatten)]
    pub id: EnrollmentIdArg,
    /// How the device attests.
    #[arg(
        long = "attestation-type",
        visible_alias = "at",
        value_enum,
        ignore_case = true
    )]
    pub attestation_type: AttestationType,
    #[command(flatten)]
    pub individual: IndividualFlags,
    #[command(flatten)]
    pub settings: SettingsFlags,
}

/// `enrollment update`
#[derive(Debug, Clone, Args)]
pub struct EnrollmentUpdateArgs {
    #[command(flatten)]
    pub id: EnrollmentIdArg,
    #[command(flatten)]
    pub individual: IndividualFlags,
    #[command(flatten)]
    pub settings: SettingsFlags,
    #[command(flatten)]
    pub remove: RemoveFlags,
    /// The etag the enrollment must still have [default: any, "*"].
    #[arg(long = "etag", short = 'e')]
    pub etag: Option<String>,
}

/// Runs an `ironhub dps enrollment` command; `None` when it prints nothing (deletes).
pub async fn run(client: &DpsClient, command: EnrollmentCommand) -> anyhow::Result<Option<Value>> {
    Ok(match command {
        EnrollmentCommand::Create(a) => Some(create(client, &a).await?),
        EnrollmentCommand::Show(a) => Some(
            enrollment_body::show(
                client,
                EnrollmentKind::Individual,
                &a.id.enrollment_id,
                a.show_keys,
            )
            .await?,
        ),
        EnrollmentCommand::List(a) => Some(serde_json::to_value(
            client
                .query_enrollments::<IndividualEnrollment>(top(&a))
                .await?,
        )?),
        EnrollmentCommand::Update(a) => Some(update(client, &a).await?),
        EnrollmentCommand::Delete(a) => {
            client
                .delete_enrollment(
                    EnrollmentKind::Individual,
                    &a.id.enrollment_id,
                    Some(etag_or_any(a.etag.as_deref())),
                )
                .await?;
            None
        }
        EnrollmentCommand::Registration { command } => match command {
            EnrollmentRegistrationCommand::Show(a) => Some(serde_json::to_value(
                client.get_registration(&a.enrollment_id).await?,
            )?),
            EnrollmentRegistrationCommand::Delete(a) => {
                client
                    .delete_registration(&a.id.enrollment_id, Some(etag_or_any(a.etag.as_deref())))
                    .await?;
                None
            }
        },
    })
}

/// `enrollment create`
async fn create(client: &DpsClient, args: &EnrollmentCreateArgs) -> anyhow::Result<Value> {
    let id = &args.id.enrollment_id;
    let body = individual_body(id, args.attestation_type, &args.individual, &args.settings)?;
    let written = client.put_enrollment(id, &body, None).await?;
    Ok(serde_json::to_value(written)?)
}

/// `enrollment update`
async fn update(client: &DpsClient, args: &EnrollmentUpdateArgs) -> anyhow::Result<Value> {
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
