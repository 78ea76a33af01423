//! Flags and flag parsing several command groups share (no command lives here).

use anyhow::{Context as _, bail};
use clap::{Args, ValueEnum};
use serde_json::Value;

/// `--status`
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Status {
    Enabled,
    Disabled,
}

impl Status {
    /// The device status this flag sets.
    pub fn wire(self) -> ironhub_wire::hub::DeviceStatus {
        match self {
            Status::Enabled => ironhub_wire::hub::DeviceStatus::Enabled,
            Status::Disabled => ironhub_wire::hub::DeviceStatus::Disabled,
        }
    }

    pub fn as_str(self) -> &'static str {
        self.wire().as_str()
    }
}

/// `--key-type`
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Default)]
pub enum KeyType {
    #[default]
    Primary,
    Secondary,
}

/// `-d/--device-id`
#[derive(Debug, Clone, Args)]
pub struct DeviceIdArgs {
    /// Target device.
    #[arg(long = "device-id", short = 'd')]
    pub device_id: String,
}

/// `-d/--device-id` and `-m/--module-id`
#[derive(Debug, Clone, Args)]
pub struct ModuleIdArgs {
    /// Target device.
    #[arg(long = "device-id", short = 'd')]
    pub device_id: String,
    /// Target module.
    #[arg(long = "module-id", short = 'm')]
    pub module_id: String,
}

/// A JSON argument, given inline or as the path of a file that holds it (as az takes them).
pub fn json_arg(name: &str, text: &str) -> anyhow::Result<Value> {
    if let Ok(v) = serde_json::from_str(text) {
        return Ok(v);
    }
    let path = std::path::Path::new(text);
    if path.is_file() {
        let content =
            std::fs::read_to_string(path).with_context(|| format!("cannot read {text}"))?;
        return serde_json::from_str(&content)
            .with_context(|| format!("{text} does not hold valid JSON for {name}"));
    }
    bail!("{name} must be JSON or the path of a file that holds JSON")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn json_arguments_inline_or_from_a_file() {
        assert_eq!(json_arg("x", r#"{"a":1}"#).unwrap(), json!({"a": 1}));
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("t.json");
        std::fs::write(&file, r#"{"b":2}"#).unwrap();
        assert_eq!(
            json_arg("x", file.to_str().unwrap()).unwrap(),
            json!({"b": 2})
        );
        assert!(json_arg("--desired", "{oops").is_err());
    }
}
