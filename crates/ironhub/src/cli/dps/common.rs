//! DPS flags and helpers several `ironhub dps` command groups share (no command lives here).

use clap::{ArgAction, Args};

/// `--enrollment-id/--eid/--group-id/--gid`: an enrollment group.
#[derive(Debug, Clone, Args)]
pub struct GroupIdArg {
    /// The enrollment group's id.
    #[arg(long = "enrollment-id", visible_aliases = ["eid", "group-id", "gid"])]
    pub enrollment_id: String,
}

/// An id and `--etag`.
#[derive(Debug, Clone, Args)]
pub struct EtagArgs<I: Args> {
    #[command(flatten)]
    pub id: I,
    /// The etag the record must still have [default: any, "*"].
    #[arg(long = "etag", short = 'e')]
    pub etag: Option<String>,
}

/// An id and `--show-keys`.
#[derive(Debug, Clone, Args)]
pub struct ShowArgs<I: Args> {
    #[command(flatten)]
    pub id: I,
    /// Include the symmetric keys (read with the attestation mechanism call); `--keys` alone
    /// means true.
    #[arg(
        long = "show-keys",
        visible_alias = "keys",
        num_args = 0..=1,
        default_missing_value = "true",
        action = ArgAction::Set,
        value_parser = clap::builder::BoolishValueParser::new()
    )]
    pub show_keys: Option<bool>,
}

/// `--top`
#[derive(Debug, Clone, Args)]
pub struct TopArgs {
    /// The most records to return [default: all].
    #[arg(long = "top", value_parser = clap::value_parser!(u32).range(1..))]
    pub top: Option<u32>,
}

/// The `--top` as the client takes it.
pub fn top(args: &TopArgs) -> Option<usize> {
    args.top.and_then(|n| usize::try_from(n).ok())
}

/// az sends `If-Match: *` when no etag is given.
pub fn etag_or_any(etag: Option<&str>) -> &str {
    etag.map(str::trim).filter(|e| !e.is_empty()).unwrap_or("*")
}
