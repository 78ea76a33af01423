//! The CA certificate clients trust to reach this hub over TLS (the one `serve` generated and
//! signed the server's certificate with), so that the console can hand it to whoever sets up
//! a device.

use std::sync::Arc;

use crate::Hub;

impl Hub {
    /// The same hub, telling clients to trust the CA certificate `pem`.
    pub fn with_server_ca(mut self, pem: String) -> Self {
        self.server_ca = Some(Arc::from(pem));
        self
    }

    /// The PEM of the CA certificate that signed the server's certificate, when the server
    /// generated it (not when the certificate was brought with `--tls-cert`).
    pub fn server_ca(&self) -> Option<&str> {
        self.server_ca.as_deref()
    }
}
