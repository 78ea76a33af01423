//! `ironhub device c2d-message …`: cloud-to-device messages, with the command tree and flag
//! names of `az iot device c2d-message` (send, purge) plus `receive-feedback`, which reads the
//! hub's feedback queue as `az iot hub monitor-feedback` does.
//!
//! az sends over AMQP; ironhub's CLI sends with ironhub's REST call
//! (`POST /devices/{id}/messages/deviceBound`), so `send` works against an ironhub server only,
//! while `purge` and `receive-feedback` use IoT Hub's own REST API.

use std::time::Duration;

use anyhow::{Context as _, bail};
use chrono::{DateTime, SecondsFormat, Utc};
use clap::{Args, Subcommand, ValueEnum};
use ironhub_client::{C2dMessage, HubClient};
use ironhub_wire::hub::FeedbackRecord;
use serde_json::Value;

use crate::cli::args::DeviceIdArgs;
use crate::cli::login::Session;

/// The body az sends when no `--data` is given.
pub const DEFAULT_DATA: &str = "Ping from Az CLI IoT Extension";

/// How often `send --wait` asks for feedback.
const FEEDBACK_POLL: Duration = Duration::from_millis(500);

/// `ironhub device c2d-message <command>`
#[derive(Debug, Subcommand)]
pub enum C2dCommand {
    /// Send a cloud-to-device message (with --ack and --wait, wait for the device's feedback).
    Send(SendArgs),
    /// Print the hub's waiting feedback records and complete them (or, with --abandon, give
    /// the first batch back).
    #[command(name = "receive-feedback")]
    ReceiveFeedback(ReceiveFeedbackArgs),
    /// Purge a device's cloud-to-device message queue.
    Purge(DeviceIdArgs),
}

/// `--ack`: which outcomes of the delivery the hub reports as feedback.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Ack {
    /// No feedback.
    None,
    /// Feedback when the device completes the message.
    Positive,
    /// Feedback when the message expires, is rejected or is delivered too often.
    Negative,
    /// Both.
    Full,
}

impl Ack {
    fn as_str(self) -> &'static str {
        match self {
            Ack::None => "none",
            Ack::Positive => "positive",
            Ack::Negative => "negative",
            Ack::Full => "full",
        }
    }
}

/// `c2d-message send`
#[derive(Debug, Clone, Args)]
pub struct SendArgs {
    #[command(flatten)]
    pub id: DeviceIdArgs,
    /// The message body.
    #[arg(long = "data", visible_alias = "da", default_value = DEFAULT_DATA)]
    pub data: String,
    /// Properties as `key=value` pairs separated by `;` (`"Topic=/power;k=v"`): application
    /// properties, and system properties under their property-bag names (`$.mid`, `$.cid`,
    /// `$.uid`, `$.ct`, `$.ce`, `$.exp`, `iothub-ack`); the flags below win over them. A
    /// `topic` property (any case) is sent last, where Tasmota looks for it.
    #[arg(long = "props", visible_alias = "properties", short = 'p')]
    pub props: Option<String>,
    /// The message id [default: a UUID].
    #[arg(long = "message-id", visible_alias = "mid")]
    pub message_id: Option<String>,
    /// The correlation id.
    #[arg(long = "correlation-id", visible_alias = "cid")]
    pub correlation_id: Option<String>,
    /// The user id.
    #[arg(long = "user-id", visible_alias = "uid")]
    pub user_id: Option<String>,
    /// The body's content type (with application/json the body must be JSON).
    #[arg(long = "content-type", visible_alias = "ct")]
    pub content_type: Option<String>,
    /// The body's content encoding [default: utf-8].
    #[arg(long = "content-encoding", visible_alias = "ce")]
    pub content_encoding: Option<String>,
    /// When the message expires, in milliseconds since the Unix epoch [default: the hub's
    /// time to live, an hour].
    #[arg(long = "expiry-time-utc", visible_alias = "expiry")]
    pub expiry_time_utc: Option<i64>,
    /// Which outcomes the hub reports as feedback.
    #[arg(long = "ack", value_enum)]
    pub ack: Option<Ack>,
    /// Wait until the device's feedback on the message arrives and print it (needs --ack
    /// positive, negative or full).
    #[arg(long = "wait", short = 'w')]
    pub wait: bool,
    /// Skip prompts (accepted for az compatibility; ironhub never prompts).
    #[arg(long = "yes", short = 'y')]
    pub yes: bool,
    /// Send the message this many times.
    #[arg(
        long = "repeat-send",
        visible_alias = "rs",
        default_value_t = 1,
        value_parser = clap::value_parser!(u32).range(1..)
    )]
    pub repeat_send: u32,
    /// With --wait: give up after this many seconds without the feedback.
    #[arg(long = "timeout", visible_alias = "to", default_value_t = 300)]
    pub timeout: u64,
}

/// `c2d-message receive-feedback`
#[derive(Debug, Clone, Args)]
pub struct ReceiveFeedbackArgs {
    /// Give the batch read back to the hub (it is received again) instead of completing it.
    #[arg(long = "abandon")]
    pub abandon: bool,
}

/// Runs an `ironhub device c2d-message` command; `None` when it prints nothing.
pub async fn run(session: &Session, command: &C2dCommand) -> anyhow::Result<Option<Value>> {
    let client = session.client()?;
    Ok(Some(match command {
        C2dCommand::Send(a) => match send(&client, a).await? {
            Some(feedback) => serde_json::to_value(feedback)?,
            // az prints nothing when it does not wait.
            None => return Ok(None),
        },
        C2dCommand::ReceiveFeedback(a) => {
            serde_json::to_value(receive_feedback(&client, a.abandon).await?)?
        }
        C2dCommand::Purge(a) => serde_json::to_value(client.purge_c2d(&a.device_id).await?)?,
    }))
}

/// `c2d-message send`: sends the message (`--repeat-send` times); with `--wait`, returns the
/// feedback record for it.
pub async fn send(client: &HubClient, args: &SendArgs) -> anyhow::Result<Option<FeedbackRecord>> {
    let message = build_message(args, Utc::now())?;
    let mut sent = Vec::new();
    for _ in 0..args.repeat_send {
        let id = client
            .send_c2d(&args.id.device_id, &message)
            .await
            .with_context(|| {
                format!(
                    "cannot send the message to the device '{}'",
                    args.id.device_id
                )
            })?;
        sent.push(id);
    }
    if !args.wait {
        return Ok(None);
    }
    let Some(last) = sent.last() else {
        return Ok(None);
    };
    let deadline = tokio::time::Instant::now() + Duration::from_secs(args.timeout);
    wait_for_feedback(client, &args.id.device_id, last, deadline)
        .await
        .map(Some)
}

/// The message `args` describe, checked as az checks it.
pub fn build_message(args: &SendArgs, now: DateTime<Utc>) -> anyhow::Result<C2dMessage> {
    if args.wait && matches!(args.ack, None | Some(Ack::None)) {
        bail!("To wait on device feedback, ack must be \"full\", \"negative\" or \"positive\"");
    }
    let mut message = C2dMessage::default();
    let mut properties = Vec::new();
    if let Some(props) = &args.props {
        for (key, value) in parse_props(props)? {
            let slot = match key.as_str() {
                "$.mid" => &mut message.message_id,
                "$.cid" => &mut message.correlation_id,
                "$.uid" => &mut message.user_id,
                "$.ct" => &mut message.content_type,
                "$.ce" => &mut message.content_encoding,
                "$.exp" => &mut message.expiry,
                "iothub-ack" => &mut message.ack,
                k if k.starts_with("$.") => bail!(
                    "--props: '{k}' is not a system property a sender may set (use $.mid, \
                     $.cid, $.uid, $.ct, $.ce or $.exp)"
                ),
                _ => {
                    properties.push((key, value));
                    continue;
                }
            };
            *slot = Some(value);
        }
    }
    // Tasmota takes everything after `TOPIC=` in the property bag as its command topic.
    let (mut rest, topics): (Vec<_>, Vec<_>) = properties
        .into_iter()
        .partition(|(k, _): &(String, String)| !k.eq_ignore_ascii_case("topic"));
    rest.extend(topics);
    message.properties = rest;

    let flags = [
        (&mut message.message_id, &args.message_id),
        (&mut message.correlation_id, &args.correlation_id),
        (&mut message.user_id, &args.user_id),
        (&mut message.content_type, &args.content_type),
        (&mut message.content_encoding, &args.content_encoding),
    ];
    for (slot, flag) in flags {
        if flag.is_some() {
            slot.clone_from(flag);
        }
    }
    if message.content_encoding.is_none() {
        message.content_encoding = Some("utf-8".into());
    }
    if let Some(ack) = args.ack {
        message.ack = Some(ack.as_str().into());
    }
    if let Some(ms) = args.expiry_time_utc {
        message.expiry = Some(expiry_from_millis(ms, now)?);
    } else if let Some(exp) = &message.expiry
        && let Ok(ms) = exp.trim().parse::<i64>()
    {
        message.expiry = Some(expiry_from_millis(ms, now)?);
    }
    if message
        .content_type
        .as_deref()
        .is_some_and(|ct| ct.trim().eq_ignore_ascii_case("application/json"))
    {
        serde_json::from_str::<Value>(&args.data)
            .context("--data must be JSON when the content type is application/json")?;
    }
    message.body = args.data.clone().into_bytes();
    Ok(message)
}

/// `"Topic=/power;k=v"` → `[("Topic", "/power"), ("k", "v")]` (as az reads `--props`: pairs
/// split at `;`, each at its first `=`).
pub fn parse_props(text: &str) -> anyhow::Result<Vec<(String, String)>> {
    text.split(';')
        .filter(|pair| !pair.trim().is_empty())
        .map(|pair| match pair.split_once('=') {
            Some((k, v)) if !k.trim().is_empty() => Ok((k.trim().to_owned(), v.to_owned())),
            _ => bail!("--props: '{pair}' is not a key=value pair (pairs are separated by ';')"),
        })
        .collect()
}

/// Milliseconds since the epoch → RFC 3339, refusing times in the past as az does.
fn expiry_from_millis(ms: i64, now: DateTime<Utc>) -> anyhow::Result<String> {
    let Some(t) = DateTime::<Utc>::from_timestamp_millis(ms) else {
        bail!("--expiry-time-utc {ms} is not a time (milliseconds since the Unix epoch)");
    };
    if t < now {
        bail!("Message expiry time utc is in the past!");
    }
    Ok(t.to_rfc3339_opts(SecondsFormat::Millis, true))
}

/// Reads feedback batches until one holds the record for `message_id` of `device_id`; every
/// batch read is completed (as az's feedback monitor does), and other records read on the
/// way are shown on standard error so that they are not lost unseen.
async fn wait_for_feedback(
    client: &HubClient,
    device_id: &str,
    message_id: &str,
    deadline: tokio::time::Instant,
) -> anyhow::Result<FeedbackRecord> {
    let mut found = None;
    loop {
        while let Some(batch) = client.receive_feedback().await? {
            for record in batch.records {
                let mine =
                    record.original_message_id == message_id && record.device_id == device_id;
                if mine && found.is_none() {
                    found = Some(record);
                } else {
                    eprintln!(
                        "feedback on another message: {}",
                        serde_json::to_string(&record).unwrap_or_default()
                    );
                }
            }
            client.complete_feedback(&batch.lock_token).await?;
            if found.is_some() {
                break;
            }
        }
        if let Some(record) = found {
            return Ok(record);
        }
        if tokio::time::Instant::now() >= deadline {
            bail!(
                "no feedback on the message '{message_id}' arrived within the --timeout; the \
                 device may not have settled it yet"
            );
        }
        tokio::time::sleep(FEEDBACK_POLL).await;
    }
}

/// `c2d-message receive-feedback`: every waiting record, completing each batch read; with
/// `abandon`, only the first batch, given back.
pub async fn receive_feedback(
    client: &HubClient,
    abandon: bool,
) -> anyhow::Result<Vec<FeedbackRecord>> {
    let mut records = Vec::new();
    while let Some(batch) = client.receive_feedback().await? {
        records.extend(batch.records);
        if abandon {
            client.abandon_feedback(&batch.lock_token).await?;
            break;
        }
        client.complete_feedback(&batch.lock_token).await?;
    }
    Ok(records)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Debug, Parser)]
    struct Cli {
        #[command(subcommand)]
        command: C2dCommand,
    }

    fn send_args(args: &[&str]) -> SendArgs {
        let cli = Cli::try_parse_from(["c2d"].into_iter().chain(args.iter().copied())).unwrap();
        match cli.command {
            C2dCommand::Send(a) => a,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn props_are_split_as_az_splits_them() {
        assert_eq!(
            parse_props("Topic=/power;k=v=w;;empty=").unwrap(),
            [
                ("Topic".to_owned(), "/power".to_owned()),
                ("k".to_owned(), "v=w".to_owned()),
                ("empty".to_owned(), String::new()),
            ]
        );
        assert!(parse_props("novalue").is_err());
        assert!(parse_props("=v").is_err());
    }

    #[test]
    fn flags_and_props_make_the_message() {
        let now = Utc::now();
        let a = send_args(&[
            "send",
            "-d",
            "x",
            "--data",
            "hello",
            "-p",
            "Topic=/power;k=v;$.cid=c-props;$.ct=text/plain",
            "--mid",
            "m1",
            "--ack",
            "full",
            "--cid",
            "c-flag",
        ]);
        let m = build_message(&a, now).unwrap();
        assert_eq!(m.body, b"hello");
        assert_eq!(m.message_id.as_deref(), Some("m1"));
        assert_eq!(m.correlation_id.as_deref(), Some("c-flag"));
        assert_eq!(m.content_type.as_deref(), Some("text/plain"));
        assert_eq!(m.content_encoding.as_deref(), Some("utf-8"));
        assert_eq!(m.ack.as_deref(), Some("full"));
        assert_eq!(
            m.properties,
            [
                ("k".to_owned(), "v".to_owned()),
                ("Topic".to_owned(), "/power".to_owned()),
            ],
            "the topic goes last"
        );
        let default = send_args(&["send", "-d", "x"]);
        assert_eq!(
            build_message(&default, now).unwrap().body,
            DEFAULT_DATA.as_bytes()
        );
    }

    #[test]
    fn expiry_wait_and_json_are_checked() {
        let now = DateTime::<Utc>::from_timestamp_millis(1_700_000_000_000).unwrap();
        let a = send_args(&["send", "-d", "x", "--expiry", "1700000060000"]);
        assert_eq!(
            build_message(&a, now).unwrap().expiry.as_deref(),
            Some("2023-11-14T22:14:20.000Z")
        );
        let a = send_args(&["send", "-d", "x", "--props", "$.exp=1700000060000"]);
        assert_eq!(
            build_message(&a, now).unwrap().expiry.as_deref(),
            Some("2023-11-14T22:14:20.000Z")
        );
        let past = send_args(&["send", "-d", "x", "--expiry-time-utc", "1600000000000"]);
        assert!(build_message(&past, now).is_err());
        let wait = send_args(&["send", "-d", "x", "--wait"]);
        assert!(
            build_message(&wait, now)
                .unwrap_err()
                .to_string()
                .contains("ack must be")
        );
        let json = send_args(&["send", "-d", "x", "--ct", "application/json", "--da", "{"]);
        assert!(build_message(&json, now).is_err());
        let bad = send_args(&["send", "-d", "x", "-p", "$.to=/elsewhere"]);
        assert!(build_message(&bad, now).is_err());
        assert!(
            Cli::try_parse_from(["c2d", "send", "-d", "x", "--rs", "0"]).is_err(),
            "--repeat-send is at least 1"
        );
    }
}
