//! The console's session: a cookie sealed (AES-256-GCM, `ring`) with a key derived (HKDF-SHA256)
//! from the signed-in policy's own key, so that any node holding the hub's settings can open
//! it, nothing is kept in process memory, and a regenerated policy key ends every session
//! signed in with the old one. The cookie names the policy in clear (as the sealing's
//! associated data) and carries its expiry and the session's CSRF token sealed.

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
        let mut csrf = [0u8; 18];
        SystemRandom::new().fill(&mut csrf).ok()?;
        Some(Session {
            exp: now + LIFETIME_SECS,
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
    let key = sealing_key(policy_key, host)?;
    let mut nonce = [0u8; NONCE_LEN];
    SystemRandom::new().fill(&mut nonce).ok()?;
    let mut data = serde_json::to_vec(session).ok()?;
    key.seal_in_place_append_tag(
        Nonce::assume_unique_for_key(nonce),
        Aad::from(policy_name.as_bytes()),
        &mut data,
    )
    .ok()?;
    let mut sealed = nonce.to_vec();
    sealed.extend_from_slice(&data);
    Some(format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(policy_name),
        URL_SAFE_NO_PAD.encode(sealed)
    ))
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
    let sealed = URL_SAFE_NO_PAD.decode(sealed).ok()?;
    if sealed.len() <= NONCE_LEN {
        return None;
    }
    let policy = find(&name)?;
    let (nonce, data) = sealed.split_at(NONCE_LEN);
    for key_text in [&policy.primary_key, &policy.secondary_key] {
        let Some(key) = sealing_key(key_text, host) else {
            continue;
        };
        let mut data = data.to_vec();
        let nonce = Nonce::try_assume_unique_for_key(nonce).ok()?;
        if let Ok(plain) = key.open_in_place(nonce, Aad::from(name.as_bytes()), &mut data) {
            let session: Session = serde_json::from_slice(plain).ok()?;
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
    fn cookie_header_parsing() {
        assert_eq!(from_header("a=1; ironhub-console=x.y; b=2"), Some("x.y"));
        assert_eq!(from_header("a=1"), None);
        assert_eq!(
            named_from_header("ironhub-console=a; ironhub-console-dps=b", DPS_COOKIE),
            Some("b")
        );
        assert!(set_cookie("v").contains("HttpOnly; SameSite=Strict"));
        assert!(set_cookie("").contains("Max-Age=0"));
    }
}
