//! `ironhub device …`: the device-side commands of `az iot device` (cloud-to-device messages
//! in `c2d_message`, file upload in `upload_file`).

use clap::{Args, Subcommand};

use crate::cli::login::{CommonArgs, Session};
use crate::cli::output;

mod c2d_message;
mod upload_file;

/// `ironhub device`
#[derive(Debug, Args)]
pub struct DeviceArgs {
    #[command(flatten)]
    pub common: CommonArgs,
    #[command(subcommand)]
    pub command: DeviceCommand,
}

/// `ironhub device <command>`
#[derive(Debug, Subcommand)]
pub enum DeviceCommand {
    /// Cloud-to-device messaging.
    #[command(name = "c2d-message")]
    C2dMessage {
        #[command(subcommand)]
        command: c2d_message::C2dCommand,
    },
    /// Upload a file to the hub's storage account as the device does, then tell the hub.
    #[command(name = "upload-file")]
    UploadFile(upload_file::UploadFileArgs),
}

/// Runs an `ironhub device` command.
pub async fn run(args: DeviceArgs) -> anyhow::Result<()> {
    let format = args.common.output;
    let session = Session::open(&args.common).await?;
    let result = match &args.command {
        DeviceCommand::C2dMessage { command } => c2d_message::run(&session, command).await?,
        DeviceCommand::UploadFile(a) => return upload_file::run(&session, a).await,
    };
    match result {
        Some(v) => output::print(&v, format),
        None => Ok(()),
    }
}
