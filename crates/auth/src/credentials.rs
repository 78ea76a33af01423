//! What a device presents to prove who it is, whatever its transport: a SAS token (an MQTT
//! password, an HTTP `Authorization` header) and the TLS client certificate chain of its
//! connection. Adapters build it from their wire; the hub and DPS domains decide what it proves.

/// A device's credentials, transport-neutral.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Credentials<'a> {
    /// The SAS token text, trimmed; `None` when the device sent none or a blank one.
    pub token: Option<&'a str>,
    /// The TLS client certificate chain (DER, leaf first); empty when none was presented.
    pub chain: Vec<&'a [u8]>,
}

impl<'a> Credentials<'a> {
    /// The credentials of a request: a blank token counts as none (an MQTT CONNECT with an
    /// empty password, an empty `Authorization` header).
    pub fn new(token: Option<&'a str>, chain: &'a [impl AsRef<[u8]>]) -> Self {
        Credentials {
            token: token.map(str::trim).filter(|t| !t.is_empty()),
            chain: chain.iter().map(AsRef::as_ref).collect(),
        }
    }

    /// Whether the device presented nothing at all.
    pub fn is_empty(&self) -> bool {
        self.token.is_none() && self.chain.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_blank_token_is_no_token() {
        let none: [Vec<u8>; 0] = [];
        assert!(Credentials::new(Some("  "), &none).is_empty());
        assert!(Credentials::new(Some(""), &none).is_empty());
        let c = Credentials::new(Some(" SharedAccessSignature sr=x "), &none);
        assert_eq!(c.token, Some("SharedAccessSignature sr=x"));
        let chain = [vec![1u8, 2], vec![3]];
        let c = Credentials::new(None, &chain);
        assert!(!c.is_empty());
        assert_eq!(c.chain, vec![&[1u8, 2][..], &[3][..]]);
    }
}
