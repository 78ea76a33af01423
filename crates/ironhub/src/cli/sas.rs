//! Connection strings and SAS tokens the CLI builds from a login: a policy's connection
//! string, a device's key, and tokens signed with either (no command lives here).

use anyhow::{Context as _, bail};
use ironhub_auth::{ConnectionString, sas, unix_now};
use ironhub_client::host_without_port;
use ironhub_wire::hub::{AuthType, Device};
use serde_json::{Value, json};

use crate::cli::args::KeyType;
use crate::cli::login::{DPS_OWNER_POLICY, OWNER_POLICY, Service, Session};

/// `generate-sas-token --connection-string`: signs with the string's own key, offline. A device
/// (or module) string gives a device token, a policy string a hub token.
pub fn from_connection_string(text: &str, duration: u64) -> anyhow::Result<Value> {
    let cs =
        ConnectionString::parse(text).context("--connection-string is not a connection string")?;
    let expiry = expiry(duration)?;
    let key = cs
        .key()
        .context("--connection-string has no SharedAccessKey to sign with")?;
    let token = match (&cs.device_id, &cs.module_id) {
        (Some(device), module) => {
            let mut resource = format!("{}/devices/{device}", host_without_port(&cs.host_name));
            if let Some(m) = module {
                resource.push_str("/modules/");
                resource.push_str(m);
            }
            sas::generate(&resource, key, expiry, None)?
        }
        (None, _) => hub_token(&cs, expiry)?,
    };
    Ok(json!({ "sas": token }))
}

/// The connection string of a policy. A data-directory login knows every policy and both keys;
/// a `--login` knows only its own policy and the one key it carries.
pub fn policy_connection_string(
    session: &Session,
    service: Service,
    policy: Option<&str>,
    key_type: KeyType,
) -> anyhow::Result<ConnectionString> {
    let secondary = key_type == KeyType::Secondary;
    if let Some(identity) = &session.identity {
        let mut cs = match service {
            Service::Hub => {
                identity.connection_string(policy.unwrap_or(OWNER_POLICY), secondary)?
            }
            Service::Dps => {
                identity.dps_connection_string(policy.unwrap_or(DPS_OWNER_POLICY), secondary)?
            }
        };
        // Keep the host exactly as the login spells it.
        cs.host_name = session.login.host_name.clone();
        return Ok(cs);
    }
    let own = session
        .login
        .shared_access_key_name
        .as_deref()
        .unwrap_or_default();
    if let Some(p) = policy
        && !p.eq_ignore_ascii_case(own)
    {
        bail!(
            "only the login's own policy '{own}' is available with --login; use --data-dir on \
             the server's machine for policy '{p}'"
        );
    }
    if secondary {
        bail!(
            "the login carries one key of policy '{own}'; use --data-dir on the server's machine \
             for --key-type secondary"
        );
    }
    Ok(session.login.clone())
}

/// The expiry of a token valid for `duration` seconds from now.
pub fn expiry(duration: u64) -> anyhow::Result<u64> {
    if duration == 0 {
        bail!("--duration must be at least 1 second");
    }
    unix_now()
        .checked_add(duration)
        .context("--duration is too large")
}

/// `sr={host}/devices/{id}`, no `skn`, signed with the device key.
pub fn device_token(host: &str, device_id: &str, key: &str, expiry: u64) -> anyhow::Result<String> {
    let resource = format!("{}/devices/{device_id}", host_without_port(host));
    Ok(sas::generate(&resource, key, expiry, None)?)
}

/// `sr={host}&…&skn={policy}`, signed with the policy key.
pub fn hub_token(cs: &ConnectionString, expiry: u64) -> anyhow::Result<String> {
    let key = cs
        .key()
        .context("the connection string has no SharedAccessKey")?;
    Ok(sas::generate(
        host_without_port(&cs.host_name),
        key,
        expiry,
        cs.shared_access_key_name.as_deref(),
    )?)
}

/// The device's primary or secondary symmetric key.
pub fn device_key(device: &Device, key_type: KeyType) -> anyhow::Result<String> {
    let id = match device.device_id.as_str() {
        "" => "the device",
        id => id,
    };
    let kind = device.authentication.kind;
    if kind != AuthType::Sas {
        bail!(
            "device '{id}' authenticates with '{}', not with symmetric keys",
            kind.as_str()
        );
    }
    let keys = &device.authentication.symmetric_key;
    let (field, key) = match key_type {
        KeyType::Primary => ("primaryKey", &keys.primary_key),
        KeyType::Secondary => ("secondaryKey", &keys.secondary_key),
    };
    key.clone()
        .filter(|k| !k.is_empty())
        .with_context(|| format!("device '{id}' has no {field}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use ironhub_auth::SasToken;

    const KEY: &str = "dGVzdGtleXRlc3RrZXl0ZXN0a2V5dGVzdGtleQ==";

    fn token_of(v: &Value) -> String {
        v["sas"].as_str().unwrap().to_owned()
    }

    #[test]
    fn device_strings_give_device_tokens() {
        let v = from_connection_string(
            &format!("HostName=h.example:8443;DeviceId=d 1;SharedAccessKey={KEY}"),
            60,
        )
        .unwrap();
        let token = token_of(&v);
        assert!(token.starts_with("SharedAccessSignature sr=h.example%2Fdevices%2Fd%201&sig="));
        let t = SasToken::parse(&token).unwrap();
        t.verify_keys([KEY]).unwrap();
        assert_eq!(t.key_name(), None);
        assert!(t.expiry() > unix_now() && t.expiry() <= unix_now() + 60);
    }

    #[test]
    fn policy_strings_give_hub_tokens() {
        let v = from_connection_string(
            &format!("HostName=h.example;SharedAccessKeyName=service;SharedAccessKey={KEY}"),
            3600,
        )
        .unwrap();
        let t_text = token_of(&v);
        let t = SasToken::parse(&t_text).unwrap();
        assert_eq!(t.key_name(), Some("service"));
        assert_eq!(t.resource(), "h.example");
        t.verify_keys([KEY]).unwrap();
        assert!(from_connection_string("HostName=h;DeviceId=d", 60).is_err());
        assert!(from_connection_string(&format!("HostName=h;SharedAccessKey={KEY}"), 0).is_err());
    }

    #[test]
    fn logins_offer_only_their_own_policy_and_key() {
        let session = Session {
            login: ConnectionString::parse(&format!(
                "HostName=h:8443;SharedAccessKeyName=registryReadWrite;SharedAccessKey={KEY}"
            ))
            .unwrap(),
            identity: None,
            ca_files: vec![],
            bearer: None,
        };
        let hub =
            |policy, key_type| policy_connection_string(&session, Service::Hub, policy, key_type);
        let cs = hub(None, KeyType::Primary).unwrap();
        assert_eq!(
            cs.to_string(),
            format!("HostName=h:8443;SharedAccessKeyName=registryReadWrite;SharedAccessKey={KEY}")
        );
        hub(Some("RegistryReadWrite"), KeyType::Primary).unwrap();
        let e = hub(Some("iothubowner"), KeyType::Primary).unwrap_err();
        assert!(e.to_string().contains("only the login's own policy"), "{e}");
        assert!(hub(None, KeyType::Secondary).is_err());
    }
}
