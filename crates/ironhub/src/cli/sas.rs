//! `ironhub hub generate-sas-token`, `ironhub hub connection-string show` and
//! `ironhub dps connection-string show`.

use anyhow::{Context as _, bail};
use ironhub_auth::{ConnectionString, sas, unix_now};
use ironhub_client::host_without_port;
use serde_json::{Value, json};

use super::device::device_key;
use super::dps::ConnectionStringArgs;
use super::hub::{KeyType, SasTokenArgs};
use super::login::{DPS_OWNER_POLICY, OWNER_POLICY, Session};

/// `generate-sas-token`: with `-d`, a device token signed with the device's key (read from the
/// hub); without, a hub token signed with a shared access policy's key.
pub async fn generate(session: &Session, args: &SasTokenArgs) -> anyhow::Result<Value> {
    let expiry = expiry(args.duration)?;
    let token = match &args.device_id {
        Some(id) => {
            if args.policy_name.is_some() {
                bail!(
                    "--policy-name signs hub tokens; a device token (-d) is signed with the device's key"
                );
            }
            let device = session.client()?.get_device(id).await?;
            let key = device_key(&device, args.key_type)?;
            device_token(session.host(), id, &key, expiry)?
        }
        None => {
            let policy =
                policy_connection_string(session, args.policy_name.as_deref(), args.key_type)?;
            hub_token(&policy, expiry)?
        }
    };
    Ok(json!({ "sas": token }))
}

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

/// `connection-string show`
pub fn hub_connection_string(
    session: &Session,
    policy: Option<&str>,
    key_type: KeyType,
) -> anyhow::Result<Value> {
    let cs = policy_connection_string(session, policy, key_type)?;
    Ok(json!({ "connectionString": cs.to_string() }))
}

/// `dps connection-string show`: `{"connectionString": "HostName=…;SharedAccessKeyName=…;
/// SharedAccessKey=…"}` as az prints it; with `--show-all`, every policy's, as a list.
pub fn dps_connection_string(
    session: &Session,
    args: &ConnectionStringArgs,
) -> anyhow::Result<Value> {
    if args.show_all != Some(true) {
        let cs = service_connection_string(
            session,
            args.policy_name.as_deref(),
            args.key_type,
            Service::Dps,
        )?;
        return Ok(json!({ "connectionString": cs.to_string() }));
    }
    let names: Vec<String> = match session.identity.as_ref().and_then(|i| i.dps.as_ref()) {
        Some(dps) => dps.policies.iter().map(|p| p.key_name.clone()).collect(),
        None => vec![
            session
                .login
                .shared_access_key_name
                .clone()
                .unwrap_or_default(),
        ],
    };
    let all = names
        .iter()
        .map(|name| {
            service_connection_string(session, Some(name), args.key_type, Service::Dps)
                .map(|cs| Value::String(cs.to_string()))
        })
        .collect::<anyhow::Result<Vec<Value>>>()?;
    Ok(json!({ "connectionString": all }))
}

/// Which service's policies a connection string is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Service {
    Hub,
    Dps,
}

/// The connection string of a hub policy.
fn policy_connection_string(
    session: &Session,
    policy: Option<&str>,
    key_type: KeyType,
) -> anyhow::Result<ConnectionString> {
    service_connection_string(session, policy, key_type, Service::Hub)
}

/// The connection string of a policy. A data-directory login knows every policy and both keys;
/// a `--login` knows only its own policy and the one key it carries.
fn service_connection_string(
    session: &Session,
    policy: Option<&str>,
    key_type: KeyType,
    service: Service,
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

fn expiry(duration: u64) -> anyhow::Result<u64> {
    if duration == 0 {
        bail!("--duration must be at least 1 second");
    }
    unix_now()
        .checked_add(duration)
        .context("--duration is too large")
}

/// `sr={host}/devices/{id}`, no `skn`, signed with the device key.
fn device_token(host: &str, device_id: &str, key: &str, expiry: u64) -> anyhow::Result<String> {
    let resource = format!("{}/devices/{device_id}", host_without_port(host));
    Ok(sas::generate(&resource, key, expiry, None)?)
}

/// `sr={host}&…&skn={policy}`, signed with the policy key.
fn hub_token(cs: &ConnectionString, expiry: u64) -> anyhow::Result<String> {
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
        };
        let v = hub_connection_string(&session, None, KeyType::Primary).unwrap();
        assert_eq!(
            v["connectionString"],
            format!("HostName=h:8443;SharedAccessKeyName=registryReadWrite;SharedAccessKey={KEY}")
        );
        hub_connection_string(&session, Some("RegistryReadWrite"), KeyType::Primary).unwrap();
        let e = hub_connection_string(&session, Some("iothubowner"), KeyType::Primary).unwrap_err();
        assert!(e.to_string().contains("only the login's own policy"), "{e}");
        assert!(hub_connection_string(&session, None, KeyType::Secondary).is_err());
    }
}
