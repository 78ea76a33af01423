//! The TLS policy every listener applies: the lowest protocol version accepted (IoT Hub's
//! `minTlsVersion`, 1.2 by default) and, optionally, which cipher suites, by their IANA names.

use std::sync::Arc;

use rustls::SupportedCipherSuite;
use rustls::crypto::CryptoProvider;

use crate::error::TlsError;

/// The lowest TLS version a listener accepts.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum MinTlsVersion {
    #[default]
    Tls12,
    Tls13,
}

impl std::str::FromStr for MinTlsVersion {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim() {
            "1.2" => Ok(MinTlsVersion::Tls12),
            "1.3" => Ok(MinTlsVersion::Tls13),
            other => Err(format!("TLS version {other:?}: use 1.2 or 1.3")),
        }
    }
}

/// The versions and cipher suites the server's TLS endpoints accept.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TlsPolicy {
    pub min_version: MinTlsVersion,
    /// IANA names (`TLS_AES_128_GCM_SHA256`, `TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384`);
    /// empty: every suite the crypto provider has.
    pub cipher_suites: Vec<String>,
}

/// A suite's IANA name (rustls writes TLS 1.3's with a `TLS13_` prefix).
fn iana_name(suite: &SupportedCipherSuite) -> String {
    let name = format!("{:?}", suite.suite());
    match name.strip_prefix("TLS13_") {
        Some(rest) => format!("TLS_{rest}"),
        None => name,
    }
}

/// The IANA names of every cipher suite the server can offer, TLS 1.3's first.
pub fn supported_cipher_suites() -> Vec<String> {
    rustls::crypto::ring::default_provider()
        .cipher_suites
        .iter()
        .map(iana_name)
        .collect()
}

/// Checks `policy` (the cipher suites exist and leave one for the versions allowed).
pub fn check_policy(policy: &TlsPolicy) -> Result<(), TlsError> {
    policy.provider().map(|_| ())
}

impl TlsPolicy {
    /// The crypto provider with only the policy's suites; an unknown name, or a choice that
    /// leaves no suite for the versions allowed, is an error naming what is supported.
    pub(crate) fn provider(&self) -> Result<Arc<CryptoProvider>, TlsError> {
        let mut provider = rustls::crypto::ring::default_provider();
        if !self.cipher_suites.is_empty() {
            let mut chosen = Vec::new();
            for wanted in &self.cipher_suites {
                let suite = provider
                    .cipher_suites
                    .iter()
                    .find(|s| iana_name(s).eq_ignore_ascii_case(wanted.trim()))
                    .ok_or_else(|| {
                        TlsError::Policy(format!(
                            "unknown TLS cipher suite {wanted:?}; supported: {}",
                            supported_cipher_suites().join(", ")
                        ))
                    })?;
                chosen.push(*suite);
            }
            provider.cipher_suites = chosen;
        }
        let usable = provider.cipher_suites.iter().any(|s| {
            self.min_version == MinTlsVersion::Tls12 || matches!(s, SupportedCipherSuite::Tls13(_))
        });
        if !usable {
            return Err(TlsError::Policy(
                "no chosen TLS cipher suite works with TLS 1.3, the minimum version".into(),
            ));
        }
        Ok(Arc::new(provider))
    }

    /// The protocol versions allowed.
    pub(crate) fn versions(&self) -> &'static [&'static rustls::SupportedProtocolVersion] {
        static BOTH: [&rustls::SupportedProtocolVersion; 2] =
            [&rustls::version::TLS13, &rustls::version::TLS12];
        static TLS13_ONLY: [&rustls::SupportedProtocolVersion; 1] = [&rustls::version::TLS13];
        match self.min_version {
            MinTlsVersion::Tls12 => &BOTH,
            MinTlsVersion::Tls13 => &TLS13_ONLY,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suites_are_chosen_by_iana_name() {
        let names = supported_cipher_suites();
        assert!(
            names.contains(&"TLS_AES_128_GCM_SHA256".to_owned()),
            "{names:?}"
        );
        assert!(names.contains(&"TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384".to_owned()));
        let policy = TlsPolicy {
            min_version: MinTlsVersion::Tls12,
            cipher_suites: vec!["tls_ecdhe_ecdsa_with_aes_256_gcm_sha384".into()],
        };
        let provider = policy.provider().unwrap();
        assert_eq!(provider.cipher_suites.len(), 1);
        let e = TlsPolicy {
            cipher_suites: vec!["TLS_RSA_WITH_RC4_128_MD5".into()],
            ..TlsPolicy::default()
        }
        .provider()
        .unwrap_err();
        assert!(e.to_string().contains("supported: TLS_AES"), "{e}");
        let e = TlsPolicy {
            min_version: MinTlsVersion::Tls13,
            cipher_suites: vec!["TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384".into()],
        }
        .provider()
        .unwrap_err();
        assert!(e.to_string().contains("TLS 1.3"), "{e}");
        assert_eq!("1.3".parse::<MinTlsVersion>(), Ok(MinTlsVersion::Tls13));
        assert!("1.1".parse::<MinTlsVersion>().is_err());
    }
}
