//! The console's session: a cookie sealed (AES-256-GCM, `ring`) with a key derived (HKDF-SHA256)
//! from the signed-in policy's own key, so that any node holding the hub's settings can open
//! it, nothing is kept in process memory, and a regenerated policy key ends every session
//! signed in with the old one. The cookie names the policy in clear (as the sealing's
//! associated data) and carries its expiry and the session's CSRF token sealed.
//!
//! A session signed in with a bearer token has no key of its own: its cookie (`*.{sealed}`)
//! is sealed under the service's owner policy key (for another context than any policy
//! session's) and carries the token itself, sealed, so that every request is authorized with
//! the token and the session ends no later than the token's `exp`. Nothing of it is kept in
//! process memory either.

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use ironhub_auth::SharedAccessPolicy;
use ring::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use ring::hkdf;
use ring::rand::{SecureRandom as _, SystemRandom};
use serde::{Deserialize, Serialize};

/// The cookie's name (the hub's session).
pub const COOKIE: &str = "ironhub-console";
/// The DPS session's cookie: one browser may hold a hub session and a DPS session at once.
pub const DPS_COOKIE: &str = "ironhub-console-dps";
/// How long a session lasts after sign-in, in seconds (8 hours).
pub const LIFETIME_SECS: u64 = 8 * 3600;
const SALT: &[u8] = b"ironhub console session v1";

/// The clear part of a bearer session's cookie, where a policy session's names its policy
/// (`*` is not in the base64url alphabet, so the two never collide).
const BEARER: &str = "*";
/// The largest cookie value a browser is sure to keep (4096 bytes with name and attributes).
pub const MAX_COOKIE: usize = 3900;

/// What a sealed cookie carries.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Session {
    /// Unix seconds after which the session is over.
    pub exp: u64,
    /// The token every form of this session posts back.
    pub csrf: String,
}

impl Session {
    /// A new session of [`LIFETIME_SECS`] from `now`, with a fresh random CSRF token.
    pub fn new(now: u64) -> Option<Session> {
        Session::until(now + LIFETIME_SECS)
    }

    /// A new session that ends at `exp` (Unix seconds), with a fresh random CSRF token.
    pub fn until(exp: u64) -> Option<Session> {
        let mut csrf = [0u8; 18];
        SystemRandom::new().fill(&mut csrf).ok()?;
        Some(Session {
            exp,
            csrf: URL_SAFE_NO_PAD.encode(csrf),
        })
    }
}

/// The sealing key of a policy key (base64, as policies hold it) on the hub `host`.
fn sealing_key(policy_key: &str, host: &str) -> Option<LessSafeKey> {
    let secret = STANDARD.decode(policy_key).ok()?;
    let prk = hkdf::Salt::new(hkdf::HKDF_SHA256, SALT).extract(&secret);
    let info = [host.as_bytes()];
    let okm = prk.expand(&info, &AES_256_GCM).ok()?;
    Some(LessSafeKey::new(UnboundKey::from(okm)))
}

/// The cookie value of `session`, signed in as `policy_name` with `policy_key`.
pub fn seal(policy_name: &str, policy_key: &str, host: &str, session: &Session) -> Option<String> {
    let label = URL_SAFE_NO_PAD.encode(policy_name);
    seal_with(&label, policy_name, policy_key, host, session)
}

/// What a bearer session's cookie carries besides the [`Session`]: the token, and the name
/// and roles it was verified with at sign-in (for display: every check reads the token again).
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Bearer {
    pub token: String,
    pub name: String,
    pub roles: Vec<String>,
}

impl std::fmt::Debug for Bearer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The token is a secret: never in logs.
        f.debug_struct("Bearer")
            .field("name", &self.name)
            .field("roles", &self.roles)
            .finish_non_exhaustive()
    }
}

/// What a bearer session's cookie seals.
#[derive(Serialize, Deserialize)]
struct BearerSession {
    #[serde(flatten)]
    session: Session,
    #[serde(flatten)]
    bearer: Bearer,
}

/// The cookie value of `session`, signed in with `bearer`, sealed under the service's `owner`
/// policy key for `bearer:{host}` (a policy session of the same key opens nothing there, and
/// the other way round).
pub fn seal_bearer(
    bearer: &Bearer,
    owner: &SharedAccessPolicy,
    host: &str,
    session: &Session,
) -> Option<String> {
    let sealed = BearerSession {
        session: session.clone(),
        bearer: bearer.clone(),
    };
    let context = format!("bearer:{host}");
    seal_with(BEARER, BEARER, &owner.primary_key, &context, &sealed)
}

/// Whether a cookie value is a bearer session's.
pub fn is_bearer(value: &str) -> bool {
    value
        .split_once('.')
        .is_some_and(|(label, _)| label == BEARER)
}

/// Opens a bearer session's cookie value: the token it carries and the session, if it is
/// still valid at `now`.
pub fn open_bearer(
    value: &str,
    owner: &SharedAccessPolicy,
    host: &str,
    now: u64,
) -> Option<(Bearer, Session)> {
    let (label, sealed) = value.split_once('.')?;
    if label != BEARER {
        return None;
    }
    let key = sealing_key(&owner.primary_key, &format!("bearer:{host}"))?;
    let plain = unseal(&key, BEARER, sealed)?;
    let opened: BearerSession = serde_json::from_slice(&plain).ok()?;
    (opened.session.exp > now).then_some((opened.bearer, opened.session))
}

/// `label.{nonce and sealed payload}`, sealed with `aad` as associated data.
fn seal_with(
    label: &str,
    aad: &str,
    key_text: &str,
    context: &str,
    payload: &impl Serialize,
) -> Option<String> {
    let key = sealing_key(key_text, context)?;
    let mut nonce = [0u8; NONCE_LEN];
    SystemRandom::new().fill(&mut nonce).ok()?;
    let mut data = serde_json::to_vec(payload).ok()?;
    key.seal_in_place_append_tag(
        Nonce::assume_unique_for_key(nonce),
        Aad::from(aad.as_bytes()),
        &mut data,
    )
    .ok()?;
    let mut sealed = nonce.to_vec();
    sealed.extend_from_slice(&data);
    Some(format!("{label}.{}", URL_SAFE_NO_PAD.encode(sealed)))
}

/// The payload of a cookie's sealed part (base64url), if `key` sealed it with `aad`.
fn unseal(key: &LessSafeKey, aad: &str, sealed: &str) -> Option<Vec<u8>> {
    let sealed = URL_SAFE_NO_PAD.decode(sealed).ok()?;
    if sealed.len() <= NONCE_LEN {
        return None;
    }
    let (nonce, data) = sealed.split_at(NONCE_LEN);
    let nonce = Nonce::try_assume_unique_for_key(nonce).ok()?;
    let mut data = data.to_vec();
    let plain = key
        .open_in_place(nonce, Aad::from(aad.as_bytes()), &mut data)
        .ok()?;
    Some(plain.to_vec())
}

/// Opens a cookie value: the policy it names (looked up by `find`), the key of that policy
/// that sealed it, and the session, if it is still valid at `now`.
pub fn open<'p>(
    value: &str,
    host: &str,
    now: u64,
    find: impl FnOnce(&str) -> Option<&'p SharedAccessPolicy>,
) -> Option<(&'p SharedAccessPolicy, &'p str, Session)> {
    let (name, sealed) = value.split_once('.')?;
    let name = String::from_utf8(URL_SAFE_NO_PAD.decode(name).ok()?).ok()?;
    let policy = find(&name)?;
    for key_text in [&policy.primary_key, &policy.secondary_key] {
        let Some(key) = sealing_key(key_text, host) else {
            continue;
        };
        if let Some(plain) = unseal(&key, &name, sealed) {
            let session: Session = serde_json::from_slice(&plain).ok()?;
            return (session.exp > now).then_some((policy, key_text.as_str(), session));
        }
    }
    None
}

/// The `Set-Cookie` value that stores `value` for the session's lifetime (empty `value`: the
/// one that removes it).
pub fn set_cookie(value: &str) -> String {
    set_named_cookie(COOKIE, value)
}

/// [`set_cookie`] for the cookie `name` ([`COOKIE`] or [`DPS_COOKIE`]).
pub fn set_named_cookie(name: &str, value: &str) -> String {
    let max_age = if value.is_empty() { 0 } else { LIFETIME_SECS };
    cookie_for(name, value, max_age)
}

/// The `Set-Cookie` value that stores `value` in the cookie `name` for `max_age` seconds.
pub fn cookie_for(name: &str, value: &str, max_age: u64) -> String {
    format!("{name}={value}; Path=/console; Max-Age={max_age}; Secure; HttpOnly; SameSite=Strict")
}

/// The console cookie's value in a `Cookie` header.
pub fn from_header(cookies: &str) -> Option<&str> {
    named_from_header(cookies, COOKIE)
}

/// The value of the cookie `wanted` in a `Cookie` header.
pub fn named_from_header<'c>(cookies: &'c str, wanted: &str) -> Option<&'c str> {
    cookies
        .split(';')
        .filter_map(|c| c.trim().split_once('='))
        .find(|(name, _)| *name == wanted)
        .map(|(_, value)| value)
}

#[cfg(test)]
mod tests {
    use ironhub_auth::Rights;

    use super::*;

    #[test]
    fn a_sealed_session_opens_only_with_its_policy_key_and_before_expiry() {
        let policy = SharedAccessPolicy::generate("iothubowner", Rights::REGISTRY_READ);
        let session = Session::new(1000).expect("random");
        let cookie = seal(
            "iothubowner",
            &policy.secondary_key,
            "hub.example",
            &session,
        )
        .expect("sealed");
        let find = |name: &str| (name == "iothubowner").then_some(&policy);
        let (found, key, opened) = open(&cookie, "hub.example", 1001, find).expect("opens");
        assert_eq!(found.key_name, "iothubowner");
        assert_eq!(key, policy.secondary_key);
        assert_eq!(opened, session);
        // Expired, another hub, a regenerated key, a tampered cookie: all refused.
        assert!(open(&cookie, "hub.example", session.exp, find).is_none());
        assert!(open(&cookie, "other.example", 1001, find).is_none());
        let rotated = SharedAccessPolicy::generate("iothubowner", Rights::REGISTRY_READ);
        assert!(open(&cookie, "hub.example", 1001, |_| Some(&rotated)).is_none());
        let mut tampered = cookie.clone();
        tampered.pop();
        tampered.push(if cookie.ends_with('A') { 'B' } else { 'A' });
        assert!(open(&tampered, "hub.example", 1001, find).is_none());
        // The name in clear is bound to the sealed part.
        let renamed = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode("service"),
            cookie.split_once('.').expect("dot").1
        );
        assert!(open(&renamed, "hub.example", 1001, |_| Some(&policy)).is_none());
    }

    #[test]
    fn a_bearer_session_opens_only_under_its_owner_key_and_before_expiry() {
        let owner = SharedAccessPolicy::generate("iothubowner", Rights::REGISTRY_WRITE);
        let session = Session::until(2000).expect("random");
        let bearer = Bearer {
            token: "a.b.c".into(),
            name: "alice".into(),
            roles: vec!["IoT Hub Data Reader".into()],
        };
        let cookie = seal_bearer(&bearer, &owner, "hub.example", &session).expect("sealed");
        assert!(is_bearer(&cookie));
        let (opened_bearer, opened) =
            open_bearer(&cookie, &owner, "hub.example", 1999).expect("opens");
        assert_eq!((&opened_bearer, &opened), (&bearer, &session));
        assert!(!format!("{opened_bearer:?}").contains("a.b.c"));
        assert!(open_bearer(&cookie, &owner, "hub.example", 2000).is_none());
        assert!(open_bearer(&cookie, &owner, "dps:hub.example", 1999).is_none());
        let rotated = SharedAccessPolicy::generate("iothubowner", Rights::REGISTRY_WRITE);
        assert!(open_bearer(&cookie, &rotated, "hub.example", 1999).is_none());
        // A policy session sealed with the same key is not a bearer session, and a bearer
        // cookie does not open as a policy session.
        let policy =
            seal("iothubowner", &owner.primary_key, "hub.example", &session).expect("sealed");
        assert!(!is_bearer(&policy));
        assert!(open_bearer(&policy, &owner, "hub.example", 1999).is_none());
        assert!(open(&cookie, "hub.example", 1999, |_| Some(&owner)).is_none());
        let relabelled = format!("{BEARER}.{}", policy.split_once('.').expect("dot").1);
        assert!(open_bearer(&relabelled, &owner, "hub.example", 1999).is_none());
    }

    #[test]
    fn cookie_header_parsing() {
        assert_eq!(from_header("a=1; ironhub-console=x.y; b=2"), Some("x.y"));
        assert_eq!(from_header("a=1"), None);
        assert_eq!(
            named_from_header("ironhub-console=a; ironhub-console-dps=b", DPS_COOKIE),
            Some("b")
        );
        assert!(set_cookie("v").contains("HttpOnly; SameSite=Strict"));
        assert!(set_cookie("").contains("Max-Age=0"));
        assert!(cookie_for(COOKIE, "v", 42).contains("Max-Age=42; Secure; HttpOnly"));
    }
}
