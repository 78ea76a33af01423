//! The issuing CAs by name, as DPS's `clientCertificateIssuancePolicy.certificateAuthorityName`
//! names them: the default one (generated, or the operator's `--issuing-ca-cert`) and any
//! more the operator configures, each with its own validity and renewal policy. An
//! enrollment (or group) picks one by name, the hub device records it, and the hub renews
//! with the same one; the hub trusts them all.

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::credentials::Issuer;

/// The name of the default issuing CA, the one used when an enrollment names none.
pub const DEFAULT_CA_NAME: &str = "default";

/// Why an issuing CA name was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UnknownCa {
    #[error(
        "The certificate authority '{name}' is not an issuing CA of this service; configured: {known}."
    )]
    NotConfigured { name: String, known: String },
}

/// The configured issuing CAs; one of them is the default.
#[derive(Debug)]
pub struct IssuingCas {
    default: String,
    cas: BTreeMap<String, Arc<Issuer>>,
}

/// Whether `name` can name an issuing CA: 1–64 letters, digits, `-`, `_` or `.`.
pub fn is_ca_name(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

impl IssuingCas {
    /// Just the default CA, named [`DEFAULT_CA_NAME`].
    pub fn new(default: Issuer) -> Self {
        IssuingCas {
            default: DEFAULT_CA_NAME.to_owned(),
            cas: BTreeMap::from([(DEFAULT_CA_NAME.to_owned(), Arc::new(default))]),
        }
    }

    /// These CAs and `issuer` under `name`; a name that is taken or malformed is refused.
    pub fn with(mut self, name: &str, issuer: Issuer) -> Result<Self, String> {
        if !is_ca_name(name) {
            return Err(format!(
                "the issuing CA name '{name}' is not valid: use 1 to 64 letters, digits, '-', '_' or '.'"
            ));
        }
        if self.cas.contains_key(name) {
            return Err(format!("the issuing CA name '{name}' is used twice"));
        }
        self.cas.insert(name.to_owned(), Arc::new(issuer));
        Ok(self)
    }

    /// The CA named `name`, or the default when `None`.
    pub fn get(&self, name: Option<&str>) -> Result<(&str, &Issuer), UnknownCa> {
        let name = name.unwrap_or(&self.default);
        self.cas
            .get_key_value(name)
            .map(|(n, ca)| (n.as_str(), ca.as_ref()))
            .ok_or_else(|| UnknownCa::NotConfigured {
                name: name.to_owned(),
                known: self.names().collect::<Vec<_>>().join(", "),
            })
    }

    /// Checks that `name` is a configured CA.
    pub fn check(&self, name: &str) -> Result<(), UnknownCa> {
        self.get(Some(name)).map(|_| ())
    }

    /// The names of the CAs, in order.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.cas.keys().map(String::as_str)
    }

    /// The default CA.
    pub fn default_ca(&self) -> &Issuer {
        &self.cas[&self.default]
    }

    /// Every CA's certificate, DER: the anchors of what the hub issued.
    pub fn anchors(&self) -> impl Iterator<Item = &[u8]> {
        self.cas.values().map(|ca| ca.ca_der())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cas_are_found_by_name_and_the_default_by_none() {
        let default = Issuer::generate("d").unwrap();
        let short = Issuer::generate("s").unwrap().with_validity_days(7);
        let short_der = short.ca_der().to_vec();
        let cas = IssuingCas::new(default).with("short-lived", short).unwrap();
        assert_eq!(cas.get(None).unwrap().0, DEFAULT_CA_NAME);
        let (name, ca) = cas.get(Some("short-lived")).unwrap();
        assert_eq!((name, ca.ca_der()), ("short-lived", &short_der[..]));
        assert_eq!(ca.validity_days(), 7);
        let e = cas.get(Some("nope")).unwrap_err().to_string();
        assert!(
            e.contains("'nope'") && e.contains("default, short-lived"),
            "{e}"
        );
        assert_eq!(cas.anchors().count(), 2);
        assert!(cas.check("default").is_ok());
    }

    #[test]
    fn names_must_be_new_and_well_formed() {
        let cas = IssuingCas::new(Issuer::generate("d").unwrap());
        let cas = cas.with("a.b_c-1", Issuer::generate("a").unwrap()).unwrap();
        assert!(cas.with("default", Issuer::generate("x").unwrap()).is_err());
        let cas = IssuingCas::new(Issuer::generate("d").unwrap());
        assert!(
            cas.with("has space", Issuer::generate("x").unwrap())
                .is_err()
        );
        assert!(!is_ca_name(""));
        assert!(!is_ca_name(&"a".repeat(65)));
    }
}
