//! Azure connection strings: `HostName=…;SharedAccessKeyName=…;SharedAccessKey=…`.

use std::fmt;

/// A parsed connection string. Hub service, device and DPS service strings share the format.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct ConnectionString {
    pub host_name: String,
    pub shared_access_key_name: Option<String>,
    pub shared_access_key: Option<String>,
    pub device_id: Option<String>,
    pub module_id: Option<String>,
    pub gateway_host_name: Option<String>,
}

/// Why a connection string was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConnectionStringError {
    #[error("the connection string has no HostName")]
    MissingHostName,
    #[error("the connection string has no SharedAccessKey")]
    MissingKey,
    #[error("'{0}' is not a Name=Value pair")]
    Malformed(String),
}

impl ConnectionString {
    /// Parses `Name=Value` pairs separated by `;`. Names are matched case-insensitively; values
    /// keep everything after the first `=` (base64 keys end in `=`).
    pub fn parse(text: &str) -> Result<Self, ConnectionStringError> {
        let mut cs = ConnectionString::default();
        for part in text
            .trim()
            .split(';')
            .map(str::trim)
            .filter(|p| !p.is_empty())
        {
            let (name, value) = part
                .split_once('=')
                .ok_or_else(|| ConnectionStringError::Malformed(part.to_owned()))?;
            let value = value.trim().to_owned();
            match name.trim().to_ascii_lowercase().as_str() {
                "hostname" => cs.host_name = value,
                "sharedaccesskeyname" => cs.shared_access_key_name = Some(value),
                "sharedaccesskey" => cs.shared_access_key = Some(value),
                "deviceid" => cs.device_id = Some(value),
                "moduleid" => cs.module_id = Some(value),
                "gatewayhostname" => cs.gateway_host_name = Some(value),
                _ => {} // e.g. x509=true: not needed here, tolerated.
            }
        }
        if cs.host_name.is_empty() {
            return Err(ConnectionStringError::MissingHostName);
        }
        Ok(cs)
    }

    /// The key, or an error naming what is missing.
    pub fn key(&self) -> Result<&str, ConnectionStringError> {
        self.shared_access_key
            .as_deref()
            .ok_or(ConnectionStringError::MissingKey)
    }
}

impl fmt::Display for ConnectionString {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "HostName={}", self.host_name)?;
        let pairs = [
            ("DeviceId", &self.device_id),
            ("ModuleId", &self.module_id),
            ("SharedAccessKeyName", &self.shared_access_key_name),
            ("SharedAccessKey", &self.shared_access_key),
            ("GatewayHostName", &self.gateway_host_name),
        ];
        for (name, value) in pairs {
            if let Some(v) = value {
                write!(f, ";{name}={v}")?;
            }
        }
        Ok(())
    }
}

impl fmt::Debug for ConnectionString {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ConnectionString")
            .field("host_name", &self.host_name)
            .field("shared_access_key_name", &self.shared_access_key_name)
            .field("device_id", &self.device_id)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let text = "HostName=myhub.example;SharedAccessKeyName=iothubowner;SharedAccessKey=abc=";
        let cs = ConnectionString::parse(text).unwrap();
        assert_eq!(cs.host_name, "myhub.example");
        assert_eq!(cs.shared_access_key_name.as_deref(), Some("iothubowner"));
        assert_eq!(cs.key().unwrap(), "abc=");
        assert_eq!(cs.to_string(), text);
    }

    #[test]
    fn device_string_and_errors() {
        let cs = ConnectionString::parse(
            "hostname=h;deviceid=d1;SharedAccessKey=k==;GatewayHostName=localhost;x509=true;",
        )
        .unwrap();
        assert_eq!(cs.device_id.as_deref(), Some("d1"));
        assert_eq!(cs.gateway_host_name.as_deref(), Some("localhost"));
        assert_eq!(
            cs.to_string(),
            "HostName=h;DeviceId=d1;SharedAccessKey=k==;GatewayHostName=localhost"
        );
        assert_eq!(
            ConnectionString::parse("SharedAccessKey=k").unwrap_err(),
            ConnectionStringError::MissingHostName
        );
        assert!(matches!(
            ConnectionString::parse("HostName=h;garbage"),
            Err(ConnectionStringError::Malformed(_))
        ));
        assert_eq!(
            ConnectionString::parse("HostName=h").unwrap().key(),
            Err(ConnectionStringError::MissingKey)
        );
    }
}
