//! Bearer tokens from an OpenID Connect issuer (Azure docs, "Control access to IoT Hub by
//! using Microsoft Entra ID"): a JWT signed RS256 or ES256 by a key of the issuer's JWKS, for
//! the service's audience, within its `nbf`..`exp` give or take a clock skew. Its roles come
//! from a claim (`roles`) and from a role-assignment table naming principals (`oid`, `sub`
//! or a group in `groups`).
//!
//! The keys are fetched through a [`KeySource`] (the server's, over HTTPS) and cached; a
//! token naming a key the cache lacks refetches them, at most once per
//! [`REFRESH_INTERVAL`], so unknown `kid`s cannot hammer the issuer.

use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use jsonwebtoken::jwk::{Jwk, JwkSet};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde_json::{Map, Value};

/// The audience Azure's IoT Hub service SDKs request tokens for.
pub const IOT_HUB_AUDIENCE: &str = "https://iothubs.azure.net";
/// The audience Azure's DPS service SDKs request tokens for.
pub const DPS_AUDIENCE: &str = "https://azure-devices-provisioning.net";
/// The least time between two fetches of the issuer's keys.
pub const REFRESH_INTERVAL: Duration = Duration::from_secs(10);

/// A principal (`oid`, `sub` or group id) granted a role by configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoleAssignment {
    pub principal: String,
    pub role: String,
}

/// What a token must satisfy.
#[derive(Debug, Clone)]
pub struct OidcSettings {
    /// The `iss` tokens carry, exactly.
    pub issuer: String,
    /// The clock skew allowed on `exp` and `nbf`, in seconds.
    pub leeway_seconds: u64,
    /// The claim holding role names (`roles`); empty for none.
    pub role_claim: String,
    pub assignments: Vec<RoleAssignment>,
}

/// Where the issuer's JWKS comes from (the document's bytes, or why not).
pub trait KeySource: Send + Sync + fmt::Debug {
    fn fetch(&self) -> Pin<Box<dyn Future<Output = Result<Vec<u8>, String>> + Send + '_>>;
}

/// Why a bearer token was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum OidcError {
    #[error("the bearer token is not a JWT: {0}")]
    Malformed(String),
    #[error("the bearer token's algorithm {0} is not accepted (RS256, ES256)")]
    Algorithm(String),
    #[error("the issuer's signing keys could not be fetched: {0}")]
    KeysUnavailable(String),
    #[error("the bearer token's signing key is not one of the issuer's")]
    UnknownKey,
    #[error("the bearer token is not valid: {0}")]
    Invalid(String),
}

/// Who a valid token names, and the roles it holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// For messages: `upn`, `preferred_username`, `oid` or `sub`, the first present.
    pub name: String,
    pub roles: Vec<String>,
    /// Its `exp`, Unix seconds.
    pub expires: u64,
}

#[derive(Debug, Default)]
struct KeyCache {
    keys: Vec<Jwk>,
    fetched: Option<Instant>,
}

/// A token verifier for one issuer.
#[derive(Debug)]
pub struct Oidc {
    settings: OidcSettings,
    source: Arc<dyn KeySource>,
    cache: Mutex<KeyCache>,
}

impl Oidc {
    pub fn new(settings: OidcSettings, source: Arc<dyn KeySource>) -> Oidc {
        Oidc {
            settings,
            source,
            cache: Mutex::new(KeyCache::default()),
        }
    }

    /// Verifies `token` for `audience` (a trailing `/` on either side is ignored) and
    /// returns who it names with their roles.
    pub async fn verify(&self, token: &str, audience: &str) -> Result<Identity, OidcError> {
        let header =
            jsonwebtoken::decode_header(token).map_err(|e| OidcError::Malformed(e.to_string()))?;
        if !matches!(header.alg, Algorithm::RS256 | Algorithm::ES256) {
            return Err(OidcError::Algorithm(format!("{:?}", header.alg)));
        }
        let kid = header.kid.as_deref();
        let key = match self.cached_key(kid) {
            Some(key) => key,
            None => {
                self.refresh().await?;
                self.cached_key(kid).ok_or(OidcError::UnknownKey)?
            }
        };
        let key = DecodingKey::from_jwk(&key).map_err(|e| OidcError::Invalid(e.to_string()))?;
        let mut validation = Validation::new(header.alg);
        let audience = audience.trim_end_matches('/');
        validation.set_audience(&[audience.to_owned(), format!("{audience}/")]);
        validation.set_issuer(&[&self.settings.issuer]);
        validation.set_required_spec_claims(&["exp", "aud", "iss"]);
        validation.leeway = self.settings.leeway_seconds;
        validation.validate_nbf = true;
        let data = jsonwebtoken::decode::<Map<String, Value>>(token, &key, &validation)
            .map_err(|e| OidcError::Invalid(e.to_string()))?;
        Ok(self.identity(&data.claims))
    }

    /// The cached key `kid` names; without a `kid`, the only cached key.
    fn cached_key(&self, kid: Option<&str>) -> Option<Jwk> {
        let cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
        match kid {
            Some(kid) => cache
                .keys
                .iter()
                .find(|k| k.common.key_id.as_deref() == Some(kid))
                .cloned(),
            None if cache.keys.len() == 1 => cache.keys.first().cloned(),
            None => None,
        }
    }

    /// Refetches the keys unless that was tried less than [`REFRESH_INTERVAL`] ago.
    async fn refresh(&self) -> Result<(), OidcError> {
        {
            let mut cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
            if cache
                .fetched
                .is_some_and(|at| at.elapsed() < REFRESH_INTERVAL)
            {
                return Err(OidcError::UnknownKey);
            }
            cache.fetched = Some(Instant::now());
        }
        let document = self
            .source
            .fetch()
            .await
            .map_err(OidcError::KeysUnavailable)?;
        let set: JwkSet = serde_json::from_slice(&document)
            .map_err(|e| OidcError::KeysUnavailable(format!("the JWKS is not valid: {e}")))?;
        let mut cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
        cache.keys = set.keys;
        Ok(())
    }

    fn identity(&self, claims: &Map<String, Value>) -> Identity {
        let text = |name: &str| claims.get(name).and_then(Value::as_str);
        let name = ["upn", "preferred_username", "oid", "sub"]
            .into_iter()
            .find_map(text)
            .unwrap_or("unknown")
            .to_owned();
        let strings = |name: &str| -> Vec<String> {
            match claims.get(name) {
                Some(Value::String(s)) => vec![s.clone()],
                Some(Value::Array(items)) => items
                    .iter()
                    .filter_map(Value::as_str)
                    .map(str::to_owned)
                    .collect(),
                _ => Vec::new(),
            }
        };
        let mut roles = if self.settings.role_claim.is_empty() {
            Vec::new()
        } else {
            strings(&self.settings.role_claim)
        };
        let mut principals: Vec<String> = ["oid", "sub"]
            .into_iter()
            .filter_map(text)
            .map(str::to_owned)
            .collect();
        principals.extend(strings("groups"));
        for assignment in &self.settings.assignments {
            if principals.contains(&assignment.principal) {
                roles.push(assignment.role.clone());
            }
        }
        let expires = claims.get("exp").and_then(Value::as_u64).unwrap_or(0);
        Identity {
            name,
            roles,
            expires,
        }
    }
}

/// The `jwks_uri` of an OpenID Connect discovery document.
pub fn jwks_uri(discovery: &[u8]) -> Result<String, String> {
    let doc: Value =
        serde_json::from_slice(discovery).map_err(|e| format!("not a discovery document: {e}"))?;
    doc.get("jwks_uri")
        .and_then(Value::as_str)
        .map(str::to_owned)
        .ok_or_else(|| "the discovery document has no jwks_uri".to_owned())
}

/// Splits an `Authorization` header's bearer token off its scheme (`Bearer`, any case).
pub fn bearer_token(header: &str) -> Option<&str> {
    let (scheme, token) = header.trim().split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}

/// Maps a map of principals to lists of roles into assignments (the config file's shape).
pub fn assignments(table: &HashMap<String, Vec<String>>) -> Vec<RoleAssignment> {
    let mut out: Vec<RoleAssignment> = table
        .iter()
        .flat_map(|(principal, roles)| {
            roles.iter().map(|role| RoleAssignment {
                principal: principal.clone(),
                role: role.clone(),
            })
        })
        .collect();
    out.sort_by(|a, b| (&a.principal, &a.role).cmp(&(&b.principal, &b.role)));
    out
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use base64::Engine as _;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use jsonwebtoken::{EncodingKey, Header};
    use ring::rand::SystemRandom;
    use ring::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair as _};
    use serde_json::json;

    use super::*;

    const ISSUER: &str = "https://idp.example/tenant";

    /// A P-256 key: its PKCS#8 document and its public JWK named `kid`.
    fn key(kid: &str) -> (Vec<u8>, Value) {
        let rng = SystemRandom::new();
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng).unwrap();
        let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref(), &rng)
            .unwrap();
        let point = pair.public_key().as_ref();
        let jwk = json!({"kty": "EC", "crv": "P-256", "kid": kid, "alg": "ES256",
            "x": URL_SAFE_NO_PAD.encode(&point[1..33]), "y": URL_SAFE_NO_PAD.encode(&point[33..])});
        (pkcs8.as_ref().to_vec(), jwk)
    }

    /// Serves a fixed JWKS (or fails), counting fetches.
    #[derive(Debug)]
    struct Fixed {
        jwks: Option<Value>,
        fetches: AtomicUsize,
    }

    impl KeySource for Fixed {
        fn fetch(&self) -> Pin<Box<dyn Future<Output = Result<Vec<u8>, String>> + Send + '_>> {
            self.fetches.fetch_add(1, Ordering::SeqCst);
            let answer = match &self.jwks {
                Some(jwks) => Ok(jwks.to_string().into_bytes()),
                None => Err("connection refused".to_owned()),
            };
            Box::pin(std::future::ready(answer))
        }
    }

    fn verifier(jwks: Option<Value>) -> (Oidc, Arc<Fixed>) {
        let source = Arc::new(Fixed {
            jwks,
            fetches: AtomicUsize::new(0),
        });
        let settings = OidcSettings {
            issuer: ISSUER.into(),
            leeway_seconds: 60,
            role_claim: "roles".into(),
            assignments: vec![RoleAssignment {
                principal: "group-1".into(),
                role: "IoT Hub Twin Contributor".into(),
            }],
        };
        (Oidc::new(settings, source.clone()), source)
    }

    fn sign(pkcs8: &[u8], kid: &str, claims: Value) -> String {
        let mut header = Header::new(Algorithm::ES256);
        header.kid = Some(kid.into());
        jsonwebtoken::encode(&header, &claims, &EncodingKey::from_ec_der(pkcs8)).unwrap()
    }

    fn claims(offset_exp: i64) -> Value {
        let now = crate::unix_now() as i64;
        json!({"iss": ISSUER, "aud": IOT_HUB_AUDIENCE, "exp": now + offset_exp, "nbf": now - 10,
            "oid": "oid-1", "upn": "ada@example", "roles": ["IoT Hub Data Reader"],
            "groups": ["group-1"]})
    }

    fn run<T>(f: impl Future<Output = T>) -> T {
        // The verifier's only await is the key source, which is ready at once here.
        let waker = std::task::Waker::noop();
        let mut cx = std::task::Context::from_waker(waker);
        let mut f = std::pin::pin!(f);
        match f.as_mut().poll(&mut cx) {
            std::task::Poll::Ready(v) => v,
            std::task::Poll::Pending => panic!("pending"),
        }
    }

    #[test]
    fn valid_tokens_name_their_principal_and_roles() {
        let (pkcs8, jwk) = key("k1");
        let (oidc, source) = verifier(Some(json!({"keys": [jwk]})));
        let token = sign(&pkcs8, "k1", claims(600));
        let identity = run(oidc.verify(&token, "https://iothubs.azure.net/")).unwrap();
        assert_eq!(identity.name, "ada@example");
        assert_eq!(
            identity.roles,
            ["IoT Hub Data Reader", "IoT Hub Twin Contributor"]
        );
        // Cached: a second token does not fetch again.
        run(oidc.verify(&token, IOT_HUB_AUDIENCE)).unwrap();
        assert_eq!(source.fetches.load(Ordering::SeqCst), 1);
    }

    #[test]
    fn expiry_audience_issuer_and_signature_are_checked() {
        let (pkcs8, jwk) = key("k1");
        let (oidc, _) = verifier(Some(json!({"keys": [jwk]})));
        // Within the 60 s skew, then beyond it.
        run(oidc.verify(&sign(&pkcs8, "k1", claims(-30)), IOT_HUB_AUDIENCE)).unwrap();
        let expired = run(oidc.verify(&sign(&pkcs8, "k1", claims(-120)), IOT_HUB_AUDIENCE));
        assert!(matches!(expired, Err(OidcError::Invalid(_))), "{expired:?}");
        let dps = run(oidc.verify(&sign(&pkcs8, "k1", claims(600)), DPS_AUDIENCE));
        assert!(matches!(dps, Err(OidcError::Invalid(_))), "{dps:?}");
        let mut other_issuer = claims(600);
        other_issuer["iss"] = json!("https://evil.example/");
        let wrong = run(oidc.verify(&sign(&pkcs8, "k1", other_issuer), IOT_HUB_AUDIENCE));
        assert!(matches!(wrong, Err(OidcError::Invalid(_))), "{wrong:?}");
        let (forged, _) = key("k1");
        let bad = run(oidc.verify(&sign(&forged, "k1", claims(600)), IOT_HUB_AUDIENCE));
        assert!(matches!(bad, Err(OidcError::Invalid(_))), "{bad:?}");
        assert!(matches!(
            run(oidc.verify("not.a.jwt", IOT_HUB_AUDIENCE)),
            Err(OidcError::Malformed(_))
        ));
        let hs256 = jsonwebtoken::encode(
            &Header::default(),
            &claims(600),
            &EncodingKey::from_secret(b"k"),
        )
        .unwrap();
        assert!(matches!(
            run(oidc.verify(&hs256, IOT_HUB_AUDIENCE)),
            Err(OidcError::Algorithm(_))
        ));
    }

    #[test]
    fn unknown_keys_refetch_at_most_once_per_interval() {
        let (pkcs8, jwk) = key("k1");
        let (oidc, source) = verifier(Some(json!({"keys": [jwk]})));
        let unknown = sign(&pkcs8, "k2", claims(600));
        assert_eq!(
            run(oidc.verify(&unknown, IOT_HUB_AUDIENCE)),
            Err(OidcError::UnknownKey)
        );
        assert_eq!(
            run(oidc.verify(&unknown, IOT_HUB_AUDIENCE)),
            Err(OidcError::UnknownKey)
        );
        assert_eq!(source.fetches.load(Ordering::SeqCst), 1);
    }

    #[test]
    fn an_unreachable_issuer_refuses_tokens() {
        let (pkcs8, _) = key("k1");
        let (oidc, _) = verifier(None);
        let refused = run(oidc.verify(&sign(&pkcs8, "k1", claims(600)), IOT_HUB_AUDIENCE));
        assert!(
            matches!(refused, Err(OidcError::KeysUnavailable(_))),
            "{refused:?}"
        );
    }

    #[test]
    fn bearer_headers_and_discovery() {
        assert_eq!(bearer_token("Bearer abc"), Some("abc"));
        assert_eq!(bearer_token("bearer  abc "), Some("abc"));
        assert_eq!(bearer_token("SharedAccessSignature sr=x"), None);
        assert_eq!(
            jwks_uri(br#"{"jwks_uri":"https://idp/keys"}"#).unwrap(),
            "https://idp/keys"
        );
        assert!(jwks_uri(b"{}").is_err());
    }
}
