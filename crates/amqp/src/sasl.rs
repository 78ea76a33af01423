//! The SASL mechanisms IoT Hub offers: `MSSBCBS` and `ANONYMOUS` (the client then presents
//! its tokens on `$cbs`), `EXTERNAL` (an X.509 device: its TLS client certificate), and
//! `PLAIN` with a SAS token as the password and as the user name `{policy}@sas.root.{hub}`
//! (a service), `{deviceId}@sas.{hub}` (a device) or `{deviceId}/{moduleId}@sas.{hub}` (a
//! module) (Azure docs, "Communicate with your IoT hub by using the AMQP Protocol", and
//! "Control access to IoT Hub", protocol specifics), or `{idScope}/registrations/{id}` (a
//! device provisioning itself with a DPS token, as the provisioning SDKs' AMQP transports
//! log in; DPS attests it on each request, as over MQTT), and `TPM` for a device that
//! attests with its TPM to DPS (`sasl_tpm.rs`), offered when the endpoint serves DPS.
//!
//! fe2o3-amqp asks the acceptor synchronously, while a device's token can only be checked
//! against its keys in the store. So a policy's login, which the hub's settings decide, is
//! checked during the exchange; a device's or module's is recorded as claimed, the exchange
//! succeeds, and [`PlainLogin::verify`] has the domain ([`Hub::authenticate`], the same call
//! as MQTT's CONNECT and `$cbs`) decide before the connection serves a session: a refusal
//! closes the connection with `amqp:unauthorized-access`, so no link of an unproven device
//! is ever attached and nothing it sent is kept.

use std::sync::{Arc, Mutex};

use fe2o3_amqp::acceptor::SaslAcceptor;
use fe2o3_amqp::acceptor::sasl_acceptor::SaslServerFrame;
use fe2o3_amqp::types::definitions::Error;
use fe2o3_amqp::types::primitives::{Array, Binary, Symbol};
use fe2o3_amqp::types::sasl::{SaslChallenge, SaslCode, SaslInit, SaslOutcome, SaslResponse};
use ironhub_auth::{Credentials, Rights};
use ironhub_dps::Dps;
use ironhub_hub::{DeviceLogin, Hub, ServiceGrant};

use crate::address::decoded;
use crate::claims::Claims;
use crate::errors::hub_error;
pub use crate::registration_login::RegistrationLogin;
use crate::sasl_tpm::{Step, TPM, TpmExchange};

const MSSBCBS: &str = "MSSBCBS";
const ANONYMOUS: &str = "ANONYMOUS";
const PLAIN: &str = "PLAIN";
/// X.509 devices: the identity is the TLS client certificate, checked when a link attaches.
const EXTERNAL: &str = "EXTERNAL";

/// What a PLAIN login presented.
#[derive(Debug, Clone)]
pub enum PlainLogin {
    /// A shared access policy's login, checked during the exchange.
    Service(ServiceGrant),
    /// A device's or module's login, to be checked by [`PlainLogin::verify`].
    Device {
        device_id: String,
        module_id: Option<String>,
        token: String,
    },
    /// A device's login to DPS (PLAIN, or `TPM` with the token its TPM signed): its token is
    /// attested by the domain with each request on its registration's links
    /// (`provisioning.rs`).
    Registration(RegistrationLogin),
}

impl PlainLogin {
    /// Records what the login proves in `claims`: a policy's grant as it is, a device's or
    /// module's once the domain accepts its token; the domain's refusal otherwise.
    pub async fn verify(self, hub: &Hub, claims: &Claims) -> Result<(), Error> {
        match self {
            PlainLogin::Service(grant) => claims.put("", grant),
            // Nothing to record for the hub: DPS attests it with each request.
            PlainLogin::Registration(_) => {}
            PlainLogin::Device {
                device_id,
                module_id,
                token,
            } => {
                let login = DeviceLogin {
                    device_id: &device_id,
                    module_id: module_id.as_deref(),
                    credentials: Credentials::new(Some(&token), &[] as &[&[u8]]),
                    ..DeviceLogin::default()
                };
                let device = hub.authenticate(&login).await.map_err(|e| {
                    tracing::info!(device = %device_id, module = ?module_id, error = %e, "AMQP PLAIN login refused");
                    hub_error(&e)
                })?;
                claims.put_device(device);
            }
        }
        Ok(())
    }
}

/// The server side of the SASL exchange; `login` receives what a PLAIN or TPM login
/// presented.
#[derive(Debug, Clone)]
pub struct HubSasl {
    hub: Hub,
    /// The DPS instance the endpoint serves, whose devices may log in with `TPM`.
    dps: Option<Dps>,
    login: Arc<Mutex<Option<PlainLogin>>>,
    tpm: TpmExchange,
}

impl HubSasl {
    pub fn new(hub: Hub, dps: Option<Dps>, login: Arc<Mutex<Option<PlainLogin>>>) -> Self {
        HubSasl {
            hub,
            dps,
            login,
            tpm: TpmExchange::default(),
        }
    }

    /// A step of a TPM login in SASL's words.
    fn tpm_step(&mut self, step: Step) -> SaslServerFrame {
        match step {
            Step::Challenge(bytes) => SaslServerFrame::Challenge(SaslChallenge {
                challenge: Binary::from(bytes),
            }),
            Step::Proven(login) => {
                self.record(PlainLogin::Registration(login));
                outcome(SaslCode::Ok)
            }
            Step::Refused(code) => outcome(code),
        }
    }

    fn record(&self, login: PlainLogin) {
        if let Ok(mut slot) = self.login.lock() {
            *slot = Some(login);
        }
    }

    /// Checks a PLAIN login: `authzid NUL authcid NUL password`.
    fn plain(&self, response: &[u8]) -> SaslCode {
        let mut parts = response.split(|&b| b == 0);
        let (Some(_), Some(user), Some(password), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return SaslCode::Auth;
        };
        let (Ok(user), Ok(password)) = (std::str::from_utf8(user), std::str::from_utf8(password))
        else {
            return SaslCode::Auth;
        };
        match plain_user(user) {
            Some(PlainUser::Policy(policy)) => {
                match self
                    .hub
                    .authorize_service_token(password, &[Rights::SERVICE_CONNECT])
                {
                    Ok(grant) if principal_name(&grant) == policy => {
                        self.record(PlainLogin::Service(grant));
                        SaslCode::Ok
                    }
                    Ok(_) => {
                        tracing::debug!(
                            user,
                            "AMQP PLAIN login refused: the token is signed by another policy"
                        );
                        SaslCode::Auth
                    }
                    Err(e) => {
                        tracing::debug!(user, error = %e, "AMQP PLAIN login refused");
                        SaslCode::Auth
                    }
                }
            }
            Some(PlainUser::Device(device_id, module_id)) => {
                self.record(PlainLogin::Device {
                    device_id: device_id.to_owned(),
                    module_id: module_id.map(str::to_owned),
                    token: password.to_owned(),
                });
                SaslCode::Ok
            }
            Some(PlainUser::Registration(scope, registration_id)) => {
                self.record(PlainLogin::Registration(RegistrationLogin {
                    scope: scope.to_owned(),
                    registration_id: decoded(registration_id),
                    token: password.to_owned(),
                }));
                SaslCode::Ok
            }
            None => SaslCode::Auth,
        }
    }
}

fn principal_name(grant: &ServiceGrant) -> &str {
    match &grant.principal {
        ironhub_hub::Principal::Policy { name, .. }
        | ironhub_hub::Principal::Bearer { name, .. } => name,
    }
}

/// Who a PLAIN user name says it is.
#[derive(Debug, PartialEq, Eq)]
enum PlainUser<'a> {
    /// `{policy}@sas.root.{hub}`.
    Policy(&'a str),
    /// `{deviceId}@sas.{hub}`, or `{deviceId}/{moduleId}@sas.{hub}` for a module.
    Device(&'a str, Option<&'a str>),
    /// `{idScope}/registrations/{registrationId}`: a device's DPS login (no realm; a
    /// registration id holds no `@`).
    Registration(&'a str, &'a str),
}

fn plain_user(user: &str) -> Option<PlainUser<'_>> {
    // Device ids may hold `@`; the realm is what follows the last one.
    let Some((name, realm)) = user.rsplit_once('@') else {
        let mut parts = user.split('/');
        return match (parts.next(), parts.next(), parts.next(), parts.next()) {
            (Some(scope), Some(registrations), Some(id), None)
                if registrations.eq_ignore_ascii_case("registrations")
                    && !scope.is_empty()
                    && !id.is_empty() =>
            {
                Some(PlainUser::Registration(scope, id))
            }
            _ => None,
        };
    };
    if name.is_empty() {
        return None;
    }
    if realm.starts_with("sas.root.") {
        Some(PlainUser::Policy(name))
    } else if realm.starts_with("sas.") {
        match name.split_once('/') {
            None => Some(PlainUser::Device(name, None)),
            Some((device, module)) if !device.is_empty() && !module.is_empty() => {
                Some(PlainUser::Device(device, Some(module)))
            }
            Some(_) => None,
        }
    } else {
        None
    }
}

fn outcome(code: SaslCode) -> SaslServerFrame {
    SaslServerFrame::Outcome(SaslOutcome {
        code,
        additional_data: None,
    })
}

impl SaslAcceptor for HubSasl {
    fn mechanisms(&self) -> Array<Symbol> {
        let mut mechanisms = vec![
            Symbol::from(MSSBCBS),
            Symbol::from(ANONYMOUS),
            Symbol::from(PLAIN),
            Symbol::from(EXTERNAL),
        ];
        if self.dps.is_some() {
            mechanisms.push(Symbol::from(TPM));
        }
        Array::from(mechanisms)
    }

    fn on_init(&mut self, init: SaslInit) -> SaslServerFrame {
        match init.mechanism.as_str() {
            MSSBCBS | ANONYMOUS | EXTERNAL => outcome(SaslCode::Ok),
            PLAIN => {
                let response = init.initial_response.map(|b| b.into_vec());
                outcome(self.plain(response.as_deref().unwrap_or_default()))
            }
            TPM if self.dps.is_some() => {
                let response = init.initial_response.map(|b| b.into_vec());
                let step = self.tpm.init(response.as_deref().unwrap_or_default());
                self.tpm_step(step)
            }
            _ => outcome(SaslCode::Auth),
        }
    }

    fn on_response(&mut self, response: SaslResponse) -> SaslServerFrame {
        // Only TPM has more rounds; a response to any other mechanism is refused by it.
        let step = self.tpm.respond(self.dps.as_ref(), &response.response);
        self.tpm_step(step)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use fe2o3_amqp::types::definitions::{AmqpError, ErrorCondition};
    use ironhub_hub::model::ModuleSpec;

    use super::*;
    use crate::testing::{HOST, hub};

    fn token(resource: &str, key: &str, expiry: u64) -> String {
        ironhub_auth::sas::generate(resource, key, expiry, None).unwrap()
    }

    fn device_login(device_id: &str, module_id: Option<&str>, token: String) -> PlainLogin {
        PlainLogin::Device {
            device_id: device_id.into(),
            module_id: module_id.map(str::to_owned),
            token,
        }
    }

    #[tokio::test]
    async fn a_device_s_and_a_module_s_plain_logins_are_the_domain_s_to_decide() {
        let (hub, _dir) = hub().await;
        let device = hub.get_device("d1").await.unwrap();
        let key = device.authentication.symmetric_key.primary_key.unwrap();
        let module = hub
            .put_module("d1", "m1", &ModuleSpec::default(), None)
            .await
            .unwrap();
        let module_key = module.authentication.symmetric_key.primary_key.unwrap();
        let later = ironhub_auth::unix_now() + 600;
        let own = format!("{HOST}/devices/d1");

        let claims = Claims::default();
        device_login("d1", None, token(&own, &key, later))
            .verify(&hub, &claims)
            .await
            .unwrap();
        assert_eq!(claims.device("d1").unwrap().expires, Some(later));
        assert!(claims.device("d1/m1").is_none());
        device_login(
            "d1",
            Some("m1"),
            token(&format!("{own}/modules/m1"), &module_key, later),
        )
        .verify(&hub, &claims)
        .await
        .unwrap();
        let proven = claims.device("d1/m1").unwrap();
        assert_eq!(proven.identity.module_id.as_deref(), Some("m1"));

        // Refused, and nothing recorded: a wrong key, the module's token for the device, the
        // device's token for the module, an expired token, not a token.
        let wrong = ironhub_auth::generate_key(32);
        for (module_id, token) in [
            (None, token(&own, &wrong, later)),
            (
                None,
                token(&format!("{own}/modules/m1"), &module_key, later),
            ),
            (Some("m1"), token(&own, &key, later)),
            (None, token(&own, &key, ironhub_auth::unix_now() - 1)),
            (None, "secret".to_owned()),
        ] {
            let claims = Claims::default();
            let refused = device_login("d1", module_id, token)
                .verify(&hub, &claims)
                .await
                .unwrap_err();
            assert_eq!(
                refused.condition,
                ErrorCondition::from(AmqpError::UnauthorizedAccess)
            );
            assert!(claims.device("d1").is_none() && claims.device("d1/m1").is_none());
        }
    }

    #[test]
    fn plain_user_names() {
        assert_eq!(
            plain_user("service@sas.root.myhub"),
            Some(PlainUser::Policy("service"))
        );
        assert_eq!(
            plain_user("dev1@sas.myhub"),
            Some(PlainUser::Device("dev1", None))
        );
        assert_eq!(
            plain_user("dev1/mod1@sas.myhub"),
            Some(PlainUser::Device("dev1", Some("mod1")))
        );
        assert_eq!(
            plain_user("a@b@sas.myhub"),
            Some(PlainUser::Device("a@b", None))
        );
        assert_eq!(plain_user("dev1/@sas.myhub"), None);
        assert_eq!(plain_user("/mod1@sas.myhub"), None);
        assert_eq!(plain_user("service"), None);
        assert_eq!(plain_user("@sas.root.myhub"), None);
        assert_eq!(plain_user("a@b"), None);
        assert_eq!(
            plain_user("0ne00ABC123/registrations/dev-1"),
            Some(PlainUser::Registration("0ne00ABC123", "dev-1"))
        );
        assert_eq!(plain_user("0ne00ABC123/registrations/"), None);
        assert_eq!(plain_user("0ne00ABC123/devices/dev-1"), None);
        assert_eq!(plain_user("0ne00ABC123/registrations/dev-1/x"), None);
    }
}
