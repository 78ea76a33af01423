//! `ironhub hub device-identity …`: create, show, list, update, delete and connection strings.

use anyhow::{Context as _, bail};
use ironhub_wire::hub::{
    AuthType, Authentication, AuthenticationSpec, CapabilitiesSpec, Device, DeviceSpec,
    SymmetricKeySpec, ThumbprintSpec,
};
use serde_json::{Value, json};

use super::hub::{
    AuthMethod, CreateArgs, DeleteArgs, DeviceConnectionStringArgs, DeviceFlags, KeyType, ListArgs,
    UpdateArgs,
};
use super::login::Session;

/// `device-identity create`: `PUT /devices/{id}` without `If-Match`.
pub async fn create(session: &Session, args: &CreateArgs) -> anyhow::Result<Value> {
    let body = create_body(&args.id.device_id, &args.flags)?;
    let device = session
        .client()?
        .create_device(&args.id.device_id, &body)
        .await?;
    Ok(serde_json::to_value(device)?)
}

/// `device-identity show`
pub async fn show(session: &Session, device_id: &str) -> anyhow::Result<Value> {
    Ok(serde_json::to_value(
        session.client()?.get_device(device_id).await?,
    )?)
}

/// `device-identity list`: `GET /devices?top=N`, optionally only (non-)edge devices.
pub async fn list(session: &Session, args: &ListArgs) -> anyhow::Result<Value> {
    let top = match args.top {
        -1 => None,
        n @ 1..=1000 => u32::try_from(n).ok(),
        n => bail!("--top must be between 1 and 1000, or -1 for the hub's maximum (got {n})"),
    };
    let devices = session.client()?.list_devices(top).await?;
    let devices: Vec<Device> = match args.edge_enabled {
        None => devices,
        Some(edge) => devices
            .into_iter()
            .filter(|d| d.capabilities.iot_edge == edge)
            .collect(),
    };
    Ok(serde_json::to_value(devices)?)
}

/// `device-identity update`: read the device, change what the flags say, write it back under
/// its etag (or `--etag`).
pub async fn update(session: &Session, args: &UpdateArgs) -> anyhow::Result<Value> {
    let client = session.client()?;
    let id = &args.id.device_id;
    let mut device = client.get_device(id).await?;
    apply_update(&mut device, &args.flags)?;
    let etag = match &args.etag {
        Some(e) => Some(e.clone()),
        None => Some(device.etag.clone()).filter(|e| !e.is_empty()),
    };
    let written = client
        .update_device(id, &DeviceSpec::from(&device), etag.as_deref())
        .await?;
    Ok(serde_json::to_value(written)?)
}

/// `device-identity delete`: prints nothing on success.
pub async fn delete(session: &Session, args: &DeleteArgs) -> anyhow::Result<()> {
    Ok(session
        .client()?
        .delete_device(&args.id.device_id, args.etag.as_deref())
        .await?)
}

/// `device-identity connection-string show`
pub async fn connection_string(
    session: &Session,
    args: &DeviceConnectionStringArgs,
) -> anyhow::Result<Value> {
    let id = &args.id.device_id;
    let device = session.client()?.get_device(id).await?;
    let cs = device_connection_string(session.host(), &device, args.key_type)?;
    Ok(json!({ "connectionString": cs }))
}

/// `HostName=…;DeviceId=…;SharedAccessKey=…` for a key device, `…;x509=true` for a certificate one.
pub fn device_connection_string(
    host: &str,
    device: &Device,
    key_type: KeyType,
) -> anyhow::Result<String> {
    let id = &device.device_id;
    if id.is_empty() {
        bail!("the hub's device has no deviceId");
    }
    match device.authentication.kind {
        AuthType::SelfSigned | AuthType::CertificateAuthority => {
            Ok(format!("HostName={host};DeviceId={id};x509=true"))
        }
        _ => {
            let key = device_key(device, key_type)?;
            Ok(format!(
                "HostName={host};DeviceId={id};SharedAccessKey={key}"
            ))
        }
    }
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

/// The body of `PUT /devices/{id}` for `create`, as az builds it.
pub fn create_body(device_id: &str, flags: &DeviceFlags) -> anyhow::Result<DeviceSpec> {
    let method = flags.auth_method.unwrap_or(AuthMethod::SharedPrivateKey);
    check_credentials(method, flags)?;
    let mut authentication = AuthenticationSpec {
        kind: Some(method.api_type().to_owned()),
        ..AuthenticationSpec::default()
    };
    match method {
        AuthMethod::SharedPrivateKey => {
            authentication.symmetric_key = Some(SymmetricKeySpec {
                primary_key: flags.primary_key.clone(),
                secondary_key: flags.secondary_key.clone(),
            });
        }
        AuthMethod::X509Thumbprint => {
            let Some(primary) = &flags.primary_thumbprint else {
                bail!(
                    "--auth-method x509_thumbprint needs --primary-thumbprint (and optionally \
                     --secondary-thumbprint)"
                );
            };
            authentication.x509_thumbprint = Some(ThumbprintSpec {
                primary_thumbprint: Some(primary.clone()),
                secondary_thumbprint: flags.secondary_thumbprint.clone(),
            });
        }
        AuthMethod::X509Ca => {}
    }
    Ok(DeviceSpec {
        device_id: Some(device_id.to_owned()),
        status: Some(flags.status.map_or("enabled", |s| s.as_str()).to_owned()),
        status_reason: flags.status_reason.clone(),
        authentication: Some(authentication),
        capabilities: Some(CapabilitiesSpec {
            iot_edge: Some(flags.edge_enabled.unwrap_or(false)),
        }),
        ..DeviceSpec::default()
    })
}

/// Changes a device read from the hub as the flags say, leaving everything else as it was.
/// A new `--auth-method` replaces the device's credentials: keys may be given or are generated
/// by the hub, a thumbprint device needs `--primary-thumbprint`.
pub fn apply_update(device: &mut Device, flags: &DeviceFlags) -> anyhow::Result<()> {
    if let Some(edge) = flags.edge_enabled {
        device.capabilities.iot_edge = edge;
    }
    if let Some(status) = flags.status {
        device.status = status.wire();
    }
    if let Some(reason) = &flags.status_reason {
        device.status_reason = Some(reason.clone());
    }

    let current = device.authentication.kind;
    let method = match flags.auth_method {
        Some(m) => m,
        None => match current {
            AuthType::SelfSigned => AuthMethod::X509Thumbprint,
            AuthType::CertificateAuthority => AuthMethod::X509Ca,
            AuthType::Sas => AuthMethod::SharedPrivateKey,
            AuthType::None => {
                if has_any_credential(flags) {
                    bail!(
                        "device authentication type 'none' takes no keys or thumbprints; \
                         pass --auth-method as well"
                    );
                }
                return Ok(());
            }
        },
    };
    check_credentials(method, flags)?;
    if method.api_type() != current.as_str() {
        // Switching: the old credentials go; the new ones come from the flags.
        if method == AuthMethod::X509Thumbprint && flags.primary_thumbprint.is_none() {
            bail!("changing --auth-method to x509_thumbprint needs --primary-thumbprint");
        }
        device.authentication = Authentication {
            kind: method.auth_type(),
            ..Authentication::default()
        };
    }
    let auth = &mut device.authentication;
    match method {
        AuthMethod::SharedPrivateKey => {
            if let Some(k) = &flags.primary_key {
                auth.symmetric_key.primary_key = Some(k.clone());
            }
            if let Some(k) = &flags.secondary_key {
                auth.symmetric_key.secondary_key = Some(k.clone());
            }
        }
        AuthMethod::X509Thumbprint => {
            if let Some(t) = &flags.primary_thumbprint {
                auth.x509_thumbprint.primary_thumbprint = Some(t.clone());
            }
            if let Some(t) = &flags.secondary_thumbprint {
                auth.x509_thumbprint.secondary_thumbprint = Some(t.clone());
            }
        }
        AuthMethod::X509Ca => {}
    }
    Ok(())
}

fn has_any_credential(flags: &DeviceFlags) -> bool {
    flags.primary_key.is_some()
        || flags.secondary_key.is_some()
        || flags.primary_thumbprint.is_some()
        || flags.secondary_thumbprint.is_some()
}

/// Refuses credential flags that do not belong to the authentication method.
fn check_credentials(method: AuthMethod, flags: &DeviceFlags) -> anyhow::Result<()> {
    let keys = flags.primary_key.is_some() || flags.secondary_key.is_some();
    let thumbprints = flags.primary_thumbprint.is_some() || flags.secondary_thumbprint.is_some();
    match method {
        AuthMethod::SharedPrivateKey if thumbprints => bail!(
            "a shared_private_key device takes no thumbprints (--primary-thumbprint, \
             --secondary-thumbprint); pass --auth-method x509_thumbprint for a certificate device"
        ),
        AuthMethod::X509Thumbprint if keys => {
            bail!("an x509_thumbprint device takes no keys (--primary-key, --secondary-key)")
        }
        AuthMethod::X509Ca if keys || thumbprints => bail!(
            "an x509_ca device takes no keys or thumbprints: its certificate chain authenticates it"
        ),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::hub::Status;

    fn sas_device() -> Device {
        serde_json::from_value(json!({
            "deviceId": "d1",
            "etag": "MA==",
            "status": "enabled",
            "statusReason": null,
            "authentication": {
                "type": "sas",
                "symmetricKey": {"primaryKey": "cHJpbWFyeQ==", "secondaryKey": "c2Vjb25kYXJ5"},
                "x509Thumbprint": {"primaryThumbprint": null, "secondaryThumbprint": null},
            },
            "capabilities": {"iotEdge": false},
        }))
        .unwrap()
    }

    #[test]
    fn create_bodies_follow_the_auth_method() {
        let body = create_body("d1", &DeviceFlags::default()).unwrap();
        assert_eq!(
            serde_json::to_value(&body).unwrap(),
            json!({"deviceId": "d1", "status": "enabled",
                   "authentication": {"type": "sas", "symmetricKey": {}},
                   "capabilities": {"iotEdge": false}})
        );
        let flags = DeviceFlags {
            auth_method: Some(AuthMethod::X509Thumbprint),
            primary_thumbprint: Some("AB".repeat(20)),
            status: Some(Status::Disabled),
            status_reason: Some("maintenance".into()),
            edge_enabled: Some(true),
            ..DeviceFlags::default()
        };
        let body = serde_json::to_value(create_body("d2", &flags).unwrap()).unwrap();
        assert_eq!(body["authentication"]["type"], "selfSigned");
        assert_eq!(
            body["authentication"]["x509Thumbprint"]["primaryThumbprint"],
            "AB".repeat(20)
        );
        assert_eq!(body["status"], "disabled");
        assert_eq!(body["statusReason"], "maintenance");
        assert_eq!(body["capabilities"]["iotEdge"], true);

        let flags = DeviceFlags {
            auth_method: Some(AuthMethod::X509Thumbprint),
            ..DeviceFlags::default()
        };
        assert!(create_body("d", &flags).is_err());
        let flags = DeviceFlags {
            auth_method: Some(AuthMethod::X509Ca),
            primary_key: Some("a2V5".into()),
            ..DeviceFlags::default()
        };
        assert!(create_body("d", &flags).is_err());
        let flags = DeviceFlags {
            primary_thumbprint: Some("AB".into()),
            ..DeviceFlags::default()
        };
        assert!(create_body("d", &flags).is_err());
    }

    #[test]
    fn updates_change_only_what_the_flags_say() {
        let mut d = sas_device();
        let flags = DeviceFlags {
            status: Some(Status::Disabled),
            secondary_key: Some("bmV3".into()),
            ..DeviceFlags::default()
        };
        apply_update(&mut d, &flags).unwrap();
        let d = serde_json::to_value(&d).unwrap();
        assert_eq!(d["status"], "disabled");
        assert_eq!(
            d["authentication"]["symmetricKey"]["primaryKey"],
            "cHJpbWFyeQ=="
        );
        assert_eq!(d["authentication"]["symmetricKey"]["secondaryKey"], "bmV3");
        assert_eq!(d["capabilities"]["iotEdge"], false);
        assert_eq!(d["etag"], "MA==");
    }

    #[test]
    fn switching_auth_method_needs_matching_credentials() {
        let mut d = sas_device();
        let to_x509 = DeviceFlags {
            auth_method: Some(AuthMethod::X509Thumbprint),
            ..DeviceFlags::default()
        };
        assert!(apply_update(&mut d, &to_x509).is_err());
        let to_x509 = DeviceFlags {
            auth_method: Some(AuthMethod::X509Thumbprint),
            primary_thumbprint: Some("CD".repeat(20)),
            ..DeviceFlags::default()
        };
        apply_update(&mut d, &to_x509).unwrap();
        let v = serde_json::to_value(&d).unwrap();
        assert_eq!(v["authentication"]["type"], "selfSigned");
        assert_eq!(
            v["authentication"]["symmetricKey"]["primaryKey"],
            Value::Null
        );
        // Keys on a thumbprint device are refused; a new secondary thumbprint is fine.
        let keys = DeviceFlags {
            primary_key: Some("a2V5".into()),
            ..DeviceFlags::default()
        };
        assert!(apply_update(&mut d, &keys).is_err());
        let stp = DeviceFlags {
            secondary_thumbprint: Some("EF".repeat(20)),
            ..DeviceFlags::default()
        };
        apply_update(&mut d, &stp).unwrap();
        let v = serde_json::to_value(&d).unwrap();
        assert_eq!(
            v["authentication"]["x509Thumbprint"]["primaryThumbprint"],
            "CD".repeat(20)
        );
        // Back to keys: the hub generates them unless given.
        let to_sas = DeviceFlags {
            auth_method: Some(AuthMethod::SharedPrivateKey),
            ..DeviceFlags::default()
        };
        apply_update(&mut d, &to_sas).unwrap();
        let v = serde_json::to_value(&d).unwrap();
        assert_eq!(v["authentication"]["type"], "sas");
        assert_eq!(
            v["authentication"]["x509Thumbprint"]["primaryThumbprint"],
            Value::Null
        );
    }

    #[test]
    fn connection_strings_name_the_key_or_x509() {
        let d = sas_device();
        assert_eq!(
            device_connection_string("h:8443", &d, KeyType::Primary).unwrap(),
            "HostName=h:8443;DeviceId=d1;SharedAccessKey=cHJpbWFyeQ=="
        );
        assert_eq!(
            device_connection_string("h", &d, KeyType::Secondary).unwrap(),
            "HostName=h;DeviceId=d1;SharedAccessKey=c2Vjb25kYXJ5"
        );
        let x: Device = serde_json::from_value(
            json!({"deviceId": "x1", "authentication": {"type": "certificateAuthority"}}),
        )
        .unwrap();
        assert_eq!(
            device_connection_string("h", &x, KeyType::Primary).unwrap(),
            "HostName=h;DeviceId=x1;x509=true"
        );
        assert!(device_key(&x, KeyType::Primary).is_err());
    }
}
