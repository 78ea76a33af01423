//! The SASL mechanisms IoT Hub offers: `MSSBCBS` and `ANONYMOUS` (the client then presents
//! its tokens on `$cbs`), `EXTERNAL` (an X.509 device: its TLS client certificate), and `PLAIN` with `{policy}@sas.root.{hub}` as the user name and a
//! SAS token as the password (Azure docs, "Communicate with your IoT hub by using the AMQP
//! Protocol"). A PLAIN login is checked by the domain at once; what it grants is kept for the
//! connection.

use std::sync::{Arc, Mutex};

use fe2o3_amqp::acceptor::SaslAcceptor;
use fe2o3_amqp::acceptor::sasl_acceptor::SaslServerFrame;
use fe2o3_amqp::types::primitives::{Array, Symbol};
use fe2o3_amqp::types::sasl::{SaslCode, SaslInit, SaslOutcome, SaslResponse};
use ironhub_auth::Rights;
use ironhub_hub::{Hub, ServiceGrant};

const MSSBCBS: &str = "MSSBCBS";
const ANONYMOUS: &str = "ANONYMOUS";
const PLAIN: &str = "PLAIN";
/// X.509 devices: the identity is the TLS client certificate, checked when a link attaches.
const EXTERNAL: &str = "EXTERNAL";

/// The server side of the SASL exchange; `granted` receives what a PLAIN login proved.
#[derive(Debug, Clone)]
pub struct HubSasl {
    hub: Hub,
    granted: Arc<Mutex<Option<ServiceGrant>>>,
}

impl HubSasl {
    pub fn new(hub: Hub, granted: Arc<Mutex<Option<ServiceGrant>>>) -> Self {
        HubSasl { hub, granted }
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
                        if let Ok(mut slot) = self.granted.lock() {
                            *slot = Some(grant);
                        }
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
            Some(PlainUser::Device(device)) => {
                tracing::info!(
                    device,
                    "AMQP PLAIN login refused: devices cannot connect over AMQP yet"
                );
                SaslCode::Auth
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
    /// `{deviceId}@sas.{hub}`.
    Device(&'a str),
}

fn plain_user(user: &str) -> Option<PlainUser<'_>> {
    let (name, realm) = user.split_once('@')?;
    if name.is_empty() {
        return None;
    }
    if realm.starts_with("sas.root.") {
        Some(PlainUser::Policy(name))
    } else if realm.starts_with("sas.") {
        Some(PlainUser::Device(name))
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
        Array::from(vec![
            Symbol::from(MSSBCBS),
            Symbol::from(ANONYMOUS),
            Symbol::from(PLAIN),
            Symbol::from(EXTERNAL),
        ])
    }

    fn on_init(&mut self, init: SaslInit) -> SaslServerFrame {
        match init.mechanism.as_str() {
            MSSBCBS | ANONYMOUS | EXTERNAL => outcome(SaslCode::Ok),
            PLAIN => {
                let response = init.initial_response.map(|b| b.into_vec());
                outcome(self.plain(response.as_deref().unwrap_or_default()))
            }
            _ => outcome(SaslCode::Auth),
        }
    }

    fn on_response(&mut self, _response: SaslResponse) -> SaslServerFrame {
        // None of the mechanisms offered has a second round.
        outcome(SaslCode::Sys)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_user_names() {
        assert_eq!(
            plain_user("service@sas.root.myhub"),
            Some(PlainUser::Policy("service"))
        );
        assert_eq!(
            plain_user("dev1@sas.myhub"),
            Some(PlainUser::Device("dev1"))
        );
        assert_eq!(plain_user("service"), None);
        assert_eq!(plain_user("@sas.root.myhub"), None);
        assert_eq!(plain_user("a@b"), None);
    }
}
