//! What can go wrong talking to a hub, and how IoT Hub's error bodies are read.

use std::path::PathBuf;

/// An error from [`crate::HubClient`]. Every message is meant to be shown to a person as is.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The hub answered with a non-success status. `code` is IoT Hub's error name
    /// (`DeviceNotFound`, `PreconditionFailed`, …) when the answer carried one.
    #[error("{}", service_text(*.status, .code.as_deref(), .message))]
    Service {
        status: u16,
        code: Option<String>,
        message: String,
    },
    /// The connection string cannot be used to sign requests.
    #[error("invalid connection string: {0}")]
    ConnectionString(String),
    /// An extra CA file could not be read.
    #[error("cannot use the CA file {}: {message}", .path.display())]
    CaFile { path: PathBuf, message: String },
    /// The TLS client could not be configured.
    #[error("TLS setup failed: {0}")]
    TlsSetup(String),
    /// The server's certificate chain does not lead to a trusted CA.
    #[error(
        "certificate not trusted: the server at {host} presented a certificate no trusted CA signed \
         ({detail}); pass --cafile or set SSL_CERT_FILE (an ironhub server's CA is DATA_DIR/tls/ca.pem)"
    )]
    CertificateNotTrusted { host: String, detail: String },
    /// The server's certificate does not name the host that was dialled.
    #[error(
        "certificate not valid for {host}: {detail}; use a HostName the server's certificate names \
         (`ironhub serve --hostname`)"
    )]
    CertificateWrongName { host: String, detail: String },
    /// Any other TLS failure (expired certificate, protocol mismatch, …).
    #[error("TLS handshake with {host} failed: {detail}")]
    Tls { host: String, detail: String },
    /// The TCP connection could not be made (refused, unreachable, unknown host).
    #[error("cannot connect to {host}: {detail}")]
    Connect { host: String, detail: String },
    /// No answer within the request timeout.
    #[error("no answer from {host} within {seconds} s")]
    Timeout { host: String, seconds: u64 },
    /// The exchange broke after the connection was made.
    #[error("request to {host} failed: {detail}")]
    Transport { host: String, detail: String },
    /// The request cannot be expressed over HTTP (e.g. a control character in a header).
    #[error("invalid request: {0}")]
    InvalidRequest(String),
    /// A success status with a body that is not JSON.
    #[error("the server answered HTTP {status} with a body that is not JSON: {detail}")]
    InvalidResponse { status: u16, detail: String },
}

fn service_text(status: u16, code: Option<&str>, message: &str) -> String {
    match code {
        Some(code) if !message.is_empty() => format!("{code}: {message}"),
        Some(code) => format!("{code} (HTTP {status})"),
        None if message.is_empty() => format!("HTTP {status}"),
        None => format!("{message} (HTTP {status})"),
    }
}

impl ClientError {
    /// The HTTP status of a [`ClientError::Service`] error.
    pub fn status(&self) -> Option<u16> {
        match self {
            ClientError::Service { status, .. } => Some(*status),
            _ => None,
        }
    }

    /// IoT Hub's error name (`DeviceNotFound`, …) of a [`ClientError::Service`] error.
    pub fn code(&self) -> Option<&str> {
        match self {
            ClientError::Service { code, .. } => code.as_deref(),
            _ => None,
        }
    }
}

/// Reads an IoT Hub error answer: the `iothub-errorcode` header, and a body such as
/// `{"Message":"ErrorCode:DeviceNotFound;Device d1 not found.","ExceptionMessage":"Tracking ID:…"}`
/// (the classic form) or `{"code":…,"message":"…"}` (the newer form). Unknown bodies are kept as
/// text so that nothing the server said is lost.
pub fn parse_service_error(status: u16, header_code: Option<&str>, body: &[u8]) -> ClientError {
    let mut code = header_code
        .map(str::trim)
        .filter(|c| !c.is_empty())
        .map(str::to_owned);
    let mut message = String::new();
    match serde_json::from_slice::<serde_json::Value>(body) {
        Ok(json) => {
            let text = ["Message", "message"]
                .iter()
                .find_map(|k| json.get(k).and_then(|v| v.as_str()))
                .or_else(|| {
                    json.get("error")
                        .and_then(|e| e.get("message"))
                        .and_then(|v| v.as_str())
                })
                .unwrap_or_default();
            let (body_code, text) = split_error_code(text);
            if code.is_none() {
                code = body_code.map(str::to_owned);
            }
            message = strip_tracking(text).to_owned();
        }
        Err(_) => {
            let text = String::from_utf8_lossy(body);
            let text = text.trim();
            if !text.is_empty() {
                message = text.chars().take(500).collect();
            }
        }
    }
    if message.is_empty()
        && let Some(reason) = http::StatusCode::from_u16(status)
            .ok()
            .and_then(|s| s.canonical_reason())
    {
        message = reason.to_owned();
    }
    ClientError::Service {
        status,
        code,
        message,
    }
}

/// `ErrorCode:DeviceNotFound;Device d1 not found.` → (`DeviceNotFound`, `Device d1 not found.`).
fn split_error_code(text: &str) -> (Option<&str>, &str) {
    let text = text.trim();
    if let Some(rest) = text.strip_prefix("ErrorCode:")
        && let Some((code, message)) = rest.split_once(';')
    {
        let code = code.trim();
        return ((!code.is_empty()).then_some(code), message.trim());
    }
    (None, text)
}

/// Azure appends `\r\nTracking ID:…` to some messages; it says nothing to a person.
fn strip_tracking(text: &str) -> &str {
    text.split_once("Tracking ID:")
        .map_or(text, |(before, _)| before)
        .trim()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classic_azure_body() {
        let body = br#"{"Message":"ErrorCode:DeviceNotFound;Device d1 not found.","ExceptionMessage":"Tracking ID:abc-G:0-TimeStamp:01/01/2025 00:00:00","errorCode":404001}"#;
        let e = parse_service_error(404, None, body);
        assert_eq!(e.status(), Some(404));
        assert_eq!(e.code(), Some("DeviceNotFound"));
        assert_eq!(e.to_string(), "DeviceNotFound: Device d1 not found.");
    }

    #[test]
    fn header_code_wins_and_tracking_is_dropped() {
        let body = br#"{"Message":"ErrorCode:Something;Etag mismatch.\r\nTracking ID:123-G:4-TimeStamp:x"}"#;
        let e = parse_service_error(412, Some("PreconditionFailed"), body);
        assert_eq!(e.to_string(), "PreconditionFailed: Etag mismatch.");
    }

    #[test]
    fn newer_and_unknown_bodies() {
        let e = parse_service_error(400, None, br#"{"code":400004,"message":"Bad thing."}"#);
        assert_eq!(e.to_string(), "Bad thing. (HTTP 400)");
        let e = parse_service_error(401, Some("IotHubUnauthorizedAccess"), b"");
        assert_eq!(e.to_string(), "IotHubUnauthorizedAccess: Unauthorized");
        let e = parse_service_error(502, None, b"<html>bad gateway</html>");
        assert_eq!(e.to_string(), "<html>bad gateway</html> (HTTP 502)");
        let e = parse_service_error(500, None, b"{}");
        assert_eq!(e.to_string(), "Internal Server Error (HTTP 500)");
        let e = parse_service_error(400, None, br#"{"error":{"message":"nested"}}"#);
        assert_eq!(e.to_string(), "nested (HTTP 400)");
    }
}
