//! Monitoring wiring: the `serve` settings for metrics (`--metrics-listen`) and diagnostic
//! logs (`--diagnostic-logs`, `--diagnostic-logs-file`), and starting the diagnostic log.
//! What is counted and logged is the domains' (`ironhub-observe`); `serve.rs` binds the
//! metrics listener.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::Args;
use ironhub_observe::diag::{self, Category};
use serde::Deserialize;

/// `ironhub serve`'s monitoring flags (each also an `IRONHUB_*` variable and a key of the
/// config file's `[monitoring]` table).
#[derive(Debug, Clone, Args, Default)]
#[command(next_help_heading = "Monitoring")]
pub struct MonitoringArgs {
    /// A plain-HTTP address serving `GET /metrics` in Prometheus's text format, with Azure's
    /// metric names [default: none, no metrics listener].
    #[arg(long, env = "IRONHUB_METRICS_LISTEN")]
    pub metrics_listen: Option<SocketAddr>,
    /// Diagnostic log categories to write as JSON lines shaped like Azure's resource logs:
    /// `all` or some of Connections, DeviceTelemetry, C2DCommands, DeviceIdentityOperations,
    /// TwinQueries, DirectMethods, Routes, DeviceOperations, ServiceOperations
    /// [default: none].
    #[arg(long, env = "IRONHUB_DIAGNOSTIC_LOGS")]
    pub diagnostic_logs: Option<String>,
    /// Write the diagnostic logs to this file, rotated by size, instead of standard error.
    #[arg(long, env = "IRONHUB_DIAGNOSTIC_LOGS_FILE")]
    pub diagnostic_logs_file: Option<PathBuf>,
    /// Size at which the diagnostic log file rotates, in MiB [default: 100].
    #[arg(long, env = "IRONHUB_DIAGNOSTIC_LOGS_MAX_MB", value_parser = clap::value_parser!(u64).range(1..=100_000))]
    pub diagnostic_logs_max_mb: Option<u64>,
    /// Rotated diagnostic log files kept (`FILE.1` the newest) [default: 5].
    #[arg(long, env = "IRONHUB_DIAGNOSTIC_LOGS_KEEP", value_parser = clap::value_parser!(u32).range(0..=1000))]
    pub diagnostic_logs_keep: Option<u32>,
}

/// The same settings in the `--config` file's `[monitoring]` table.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MonitoringFile {
    pub metrics_listen: Option<SocketAddr>,
    /// A list of category names, or `"all"`.
    pub diagnostic_logs: Option<DiagnosticLogs>,
    pub diagnostic_logs_file: Option<PathBuf>,
    pub diagnostic_logs_max_mb: Option<u64>,
    pub diagnostic_logs_keep: Option<u32>,
}

/// `diagnostic_logs = "all"` or `diagnostic_logs = ["Connections", …]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum DiagnosticLogs {
    One(String),
    Many(Vec<String>),
}

/// The monitoring settings the server runs with.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Monitoring {
    /// Where `/metrics` is served, if anywhere.
    pub metrics_listen: Option<SocketAddr>,
    /// The diagnostic log categories written (none: no diagnostic log).
    pub categories: Vec<Category>,
    /// The file, or standard error.
    pub file: Option<PathBuf>,
    /// Rotation size in bytes.
    pub max_bytes: u64,
    /// Rotated files kept.
    pub keep: u32,
}

impl MonitoringArgs {
    /// Flags and environment over the file's `[monitoring]` table.
    pub fn resolve(self, file: MonitoringFile) -> anyhow::Result<Monitoring> {
        let list = match (self.diagnostic_logs, file.diagnostic_logs) {
            (Some(flag), _) => flag,
            (None, Some(DiagnosticLogs::One(s))) => s,
            (None, Some(DiagnosticLogs::Many(v))) => v.join(","),
            (None, None) => String::new(),
        };
        let categories = diag::parse_categories(&list).map_err(anyhow::Error::msg)?;
        let max_mb = self
            .diagnostic_logs_max_mb
            .or(file.diagnostic_logs_max_mb)
            .unwrap_or(100);
        if max_mb == 0 {
            anyhow::bail!("diagnostic_logs_max_mb must be at least 1");
        }
        Ok(Monitoring {
            metrics_listen: self.metrics_listen.or(file.metrics_listen),
            categories,
            file: self.diagnostic_logs_file.or(file.diagnostic_logs_file),
            max_bytes: max_mb * 1024 * 1024,
            keep: self
                .diagnostic_logs_keep
                .or(file.diagnostic_logs_keep)
                .unwrap_or(5),
        })
    }
}

/// Starts the diagnostic log when categories are selected. `hub_name` names the hub and the
/// DPS in `resourceId`; `node_id` is the `location`.
pub fn start_diagnostic_logs(
    monitoring: &Monitoring,
    hub_name: &str,
    node_id: &str,
) -> anyhow::Result<()> {
    if monitoring.categories.is_empty() {
        return Ok(());
    }
    diag::install(diag::Settings {
        categories: monitoring.categories.clone(),
        file: monitoring.file.clone(),
        max_bytes: monitoring.max_bytes,
        keep: monitoring.keep,
        hub_name: hub_name.to_owned(),
        dps_name: hub_name.to_owned(),
        location: node_id.to_owned(),
    })
    .map_err(|e| anyhow::anyhow!("cannot start the diagnostic log: {e}"))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn off_by_default() {
        let m = MonitoringArgs::default()
            .resolve(MonitoringFile::default())
            .unwrap();
        assert_eq!(m.metrics_listen, None);
        assert!(m.categories.is_empty());
    }

    #[test]
    fn flags_win_over_the_file() {
        let file: MonitoringFile = toml::from_str(
            "metrics_listen = \"127.0.0.1:9100\"\ndiagnostic_logs = [\"Connections\", \"Routes\"]\ndiagnostic_logs_keep = 2\n",
        )
        .unwrap();
        let m = MonitoringArgs {
            diagnostic_logs: Some("all".into()),
            ..MonitoringArgs::default()
        }
        .resolve(file.clone())
        .unwrap();
        assert_eq!(m.categories.len(), Category::ALL.len());
        assert_eq!(m.keep, 2);
        assert_eq!(m.metrics_listen, Some("127.0.0.1:9100".parse().unwrap()));
        let m = MonitoringArgs::default().resolve(file).unwrap();
        assert_eq!(m.categories, vec![Category::Connections, Category::Routes]);
        assert!(
            MonitoringArgs {
                diagnostic_logs: Some("Telemetry".into()),
                ..MonitoringArgs::default()
            }
            .resolve(MonitoringFile::default())
            .is_err()
        );
    }
}
