//! DPS over AMQP through an AMQP client (fe2o3-amqp's), as the provisioning SDKs' AMQP
//! transports drive it: a SASL PLAIN login as `{idScope}/registrations/{id}` with a DPS token,
//! a receiver and a sender on that address, a register request answered on the receiver with
//! the request's correlation id; a request with a wrong key rejected as unauthorized with DPS's
//! error body; a link to another registration than the login's refused.

#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::time::Duration;

use fe2o3_amqp::connection::ConnectionHandle;
use fe2o3_amqp::sasl_profile::SaslProfile;
use fe2o3_amqp::session::SessionHandle;
use fe2o3_amqp::types::definitions::AmqpError;
use fe2o3_amqp::types::messaging::{
    ApplicationProperties, Body, Data, Message, MessageId, Outcome, Properties,
};
use fe2o3_amqp::types::primitives::{Binary, SimpleValue, Value};
use fe2o3_amqp::{Connection, Receiver, Sender, Session};
use ironhub_amqp::AmqpContext;
use ironhub_dps::Dps;
use ironhub_dps::model::IndividualEnrollment;
use ironhub_embedded::{LocalBus, SqliteEventLog, SqliteStore};
use ironhub_hub::{Backends, Hub};
use serde_json::json;

const HOST: &str = "myhub.example";
const WAIT: Duration = Duration::from_secs(10);

struct Server {
    ctx: AmqpContext,
    dps: Dps,
    key: String,
    _dir: tempfile::TempDir,
}

/// A hub and its DPS on one store, with an individual enrollment `dev-1` (symmetric key).
async fn server() -> Server {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(SqliteStore::open(dir.path()).unwrap());
    let backends = Backends {
        store: store.clone(),
        events: Arc::new(SqliteEventLog::open(dir.path(), 2).unwrap()),
        bus: Arc::new(LocalBus::new()),
    };
    let hub = Hub::open(backends, vec![HOST.into()]).await.unwrap();
    let dps = Dps::open(store, vec![HOST.into()], None).await.unwrap();
    let key = ironhub_auth::generate_key(32);
    let enrollment: IndividualEnrollment = serde_json::from_value(json!({
        "registrationId": "dev-1",
        "attestation": {"type": "symmetricKey",
                        "symmetricKey": {"primaryKey": key, "secondaryKey": key}},
    }))
    .unwrap();
    dps.create_or_update("dev-1", enrollment, None)
        .await
        .unwrap();
    Server {
        ctx: AmqpContext::new(hub, 5671).with_dps(dps.clone()),
        dps,
        key,
        _dir: dir,
    }
}

fn token(dps: &Dps, registration_id: &str, key: &str) -> String {
    ironhub_auth::sas::generate(
        &format!("{}/registrations/{registration_id}", dps.id_scope()),
        key,
        ironhub_auth::unix_now() + 600,
        Some("registration"),
    )
    .unwrap()
}

/// A connection logged in as `registration_id` with `token`.
async fn connect(server: &Server, registration_id: &str, token: String) -> ConnectionHandle<()> {
    let (client, io) = tokio::io::duplex(1 << 16);
    let peer = "127.0.0.1:1".parse().unwrap();
    tokio::spawn(ironhub_amqp::serve(
        io,
        peer,
        Vec::new(),
        server.ctx.clone(),
    ));
    Connection::builder()
        .container_id("device")
        .hostname(HOST)
        .sasl_profile(SaslProfile::Plain {
            username: format!("{}/registrations/{registration_id}", server.dps.id_scope()),
            password: token,
        })
        .open_with_stream(client)
        .await
        .unwrap()
}

/// A session with the device's receiver and sender on `address`, attached as the SDKs do.
async fn links(
    connection: &mut ConnectionHandle<()>,
    address: &str,
) -> (SessionHandle<()>, Receiver, Sender) {
    let mut session = Session::begin(connection).await.unwrap();
    let answers = Receiver::attach(&mut session, "answers", address)
        .await
        .unwrap();
    let requests = Sender::attach(&mut session, "requests", address)
        .await
        .unwrap();
    (session, answers, requests)
}

fn register_request() -> Message<Data> {
    let mut application = ApplicationProperties::default();
    application.insert(
        "iotdps-operation-type".into(),
        SimpleValue::String("iotdps-register".into()),
    );
    Message::builder()
        .properties(
            Properties::builder()
                .correlation_id(MessageId::String("c-42".into()))
                .build(),
        )
        .application_properties(application)
        .data(Binary::from(br#"{"registrationId":"dev-1"}"#.to_vec()))
        .build()
}

#[tokio::test]
async fn a_registration_is_answered_on_the_device_s_receiver() {
    let server = server().await;
    let address = format!("{}/registrations/dev-1", server.dps.id_scope());
    let sas = token(&server.dps, "dev-1", &server.key);
    let mut connection = connect(&server, "dev-1", sas).await;
    let (_session, mut answers, mut requests) = links(&mut connection, &address).await;

    let outcome = requests.send(register_request()).await.unwrap();
    assert!(matches!(outcome, Outcome::Accepted(_)), "{outcome:?}");
    let answer = tokio::time::timeout(WAIT, answers.recv::<Body<Value>>())
        .await
        .expect("no answer")
        .unwrap();
    answers.accept(&answer).await.unwrap();
    let message = answer.message();
    let properties = message.properties.as_ref().unwrap();
    assert_eq!(
        properties.correlation_id,
        Some(MessageId::String("c-42".into()))
    );
    let Body::Data(data) = &message.body else {
        panic!("the answer is not one data section: {:?}", message.body);
    };
    let op: serde_json::Value = serde_json::from_slice(&data.iter().next().unwrap().0).unwrap();
    assert_eq!(op["status"], "assigning");
    assert!(op["operationId"].as_str().is_some_and(|id| !id.is_empty()));
    let retry_after = message
        .application_properties
        .as_ref()
        .and_then(|p| p.get("retry-after").cloned());
    assert!(matches!(retry_after, Some(SimpleValue::Uint(s)) if s > 0));
}

#[tokio::test]
async fn a_wrong_key_is_rejected_and_another_registration_s_link_refused() {
    let server = server().await;
    let address = format!("{}/registrations/dev-1", server.dps.id_scope());
    let wrong = token(&server.dps, "dev-1", &ironhub_auth::generate_key(32));
    let mut connection = connect(&server, "dev-1", wrong).await;
    let (mut session, _answers, mut requests) = links(&mut connection, &address).await;
    let outcome = requests.send(register_request()).await.unwrap();
    let Outcome::Rejected(rejected) = outcome else {
        panic!("not rejected: {outcome:?}");
    };
    let error = rejected.error.unwrap();
    assert_eq!(error.condition, AmqpError::UnauthorizedAccess.into());
    let body: serde_json::Value =
        serde_json::from_str(error.description.as_deref().unwrap()).unwrap();
    assert_eq!(body["errorCode"], 401002);

    // The login is dev-1's: a link to dev-2 is closed at once.
    let other = format!("{}/registrations/dev-2", server.dps.id_scope());
    let mut foreign = Receiver::attach(&mut session, "foreign", other.as_str())
        .await
        .unwrap();
    let refused = tokio::time::timeout(WAIT, foreign.recv::<Body<Value>>())
        .await
        .expect("the link was not closed");
    assert!(refused.is_err());
}
