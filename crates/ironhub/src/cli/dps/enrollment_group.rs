//! `ironhub dps enrollment-group …`: enrollment groups, with the flags of
//! `az iot dps enrollment-group` (the bodies are built in `enrollment_body`; `registration` and
//! `compute-device-key` are their own modules, shared with the deprecated top-level aliases).

use clap::{Args, Subcommand};
use ironhub_client::{DpsClient, EnrollmentKind};
use ironhub_wire::dps::{AttestationType as AttestationKind, EnrollmentGroup};
use serde_json::Value;

use super::common::{EtagArgs, GroupIdArg, ShowArgs, TopArgs, etag_or_any, top};
use super::compute_device_key::{self, ComputeKeyArgs};
use super::enrollment_body::{
    self, CaNameFlags, RemoveFlags, SettingsFlags, check_update_flags, group_body, set_keys,
    update_group_x509, update_settings,
};
use super::registration::{self, GroupRegistrationCommand};

/// `ironhub dps enrollment-group <command>`
#[derive(Debug, Subcommand)]
pub enum GroupCommand {
    /// Create an enrollment group (symmetric key unless a certificate or CA is given).
    Create(GroupCreateArgs),
    /// Get an enrollment group (with --show-keys, its symmetric keys too).
    Show(ShowArgs<GroupIdArg>),
    /// List the enrollment groups.
    List(TopArgs),
    /// Update an enrollment group (only what the flags name changes).
    Update(GroupUpdateArgs),
    /// Delete an enrollment group (its devices' registrations stay).
    Delete(EtagArgs<GroupIdArg>),
    /// Compute a device's key: base64(HMAC-SHA256(group key, registration id)).
    #[command(name = "compute-device-key")]
    ComputeDeviceKey(ComputeKeyArgs),
    /// Manage the registrations of the group's devices.
    Registration {
        #[command(subcommand)]
        command: GroupRegistrationCommand,
    },
}

/// `enrollment-group create`
#[derive(Debug, Clone, Args)]
pub struct GroupCreateArgs {
    #[command(flatten)]
    pub id: GroupIdArg,
    #[command(flatten)]
    pub ca: CaNameFlags,
    #[command(flatten)]
    pub settings: SettingsFlags,
}

/// `enrollment-group update`
#[derive(Debug, Clone, Args)]
pub struct GroupUpdateArgs {
    #[command(flatten)]
    pub id: GroupIdArg,
    #[command(flatten)]
    pub ca: CaNameFlags,
    #[command(flatten)]
    pub settings: SettingsFlags,
    #[command(flatten)]
    pub remove: RemoveFlags,
    /// The etag the group must still have [default: any, "*"].
    #[arg(long = "etag", short = 'e')]
    pub etag: Option<String>,
}

/// Runs an `ironhub dps enrollment-group` command; `None` when it prints nothing (deletes).
pub async fn run(client: &DpsClient, command: GroupCommand) -> anyhow::Result<Option<Value>> {
    Ok(match command {
        GroupCommand::Create(a) => Some(create(client, &a).await?),
        GroupCommand::Show(a) => Some(
            enrollment_body::show(
                client,
                EnrollmentKind::Group,
                &a.id.enrollment_id,
                a.show_keys,
            )
            .await?,
        ),
        GroupCommand::List(a) => Some(serde_json::to_value(
            client.query_enrollments::<EnrollmentGroup>(top(&a)).await?,
        )?),
        GroupCommand::Update(a) => Some(update(client, &a).await?),
        GroupCommand::Delete(a) => {
            client
                .delete_enrollment(
                    EnrollmentKind::Group,
                    &a.id.enrollment_id,
                    Some(etag_or_any(a.etag.as_deref())),
                )
                .await?;
            None
        }
        GroupCommand::ComputeDeviceKey(a) => Some(compute_device_key::run(client, &a).await?),
        GroupCommand::Registration { command } => registration::run(client, command).await?,
    })
}

/// `enrollment-group create`
async fn create(client: &DpsClient, args: &GroupCreateArgs) -> anyhow::Result<Value> {
    let id = &args.id.enrollment_id;
    let body = group_body(id, &args.ca, &args.settings)?;
    let written = client.put_enrollment(id, &body, None).await?;
    Ok(serde_json::to_value(written)?)
}

/// `enrollment-group update`
async fn update(client: &DpsClient, args: &GroupUpdateArgs) -> anyhow::Result<Value> {
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
