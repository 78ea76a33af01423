//! A `$cbs` request sent before the client's receiving link is attached is still answered
//! once that link attaches. uamqp (the Python service SDK's AMQP) attaches `$cbs`'s sending
//! link first and puts its token at once; when the answer was dropped, its put-token timed
//! out after 10 s.

#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::time::Duration;

use fe2o3_amqp::types::messaging::{ApplicationProperties, Body, Message, Properties};
use fe2o3_amqp::types::primitives::{SimpleValue, Value};
use fe2o3_amqp::{Connection, Receiver, Sender, Session};
use ironhub_amqp::AmqpContext;
use ironhub_embedded::{LocalBus, SqliteEventLog, SqliteStore};
use ironhub_hub::{Backends, Hub};

const HOST: &str = "myhub.example";

#[tokio::test]
async fn a_put_token_sent_before_the_answer_link_is_attached_is_answered() {
    let dir = tempfile::tempdir().unwrap();
    let backends = Backends {
        store: Arc::new(SqliteStore::open(dir.path()).unwrap()),
        events: Arc::new(SqliteEventLog::open(dir.path(), 2).unwrap()),
        bus: Arc::new(LocalBus::new()),
    };
    let hub = Hub::open(backends, vec![HOST.into()]).await.unwrap();
    let key = hub
        .settings()
        .policy("iothubowner")
        .unwrap()
        .primary_key
        .clone();
    let token = ironhub_auth::sas::generate(
        HOST,
        &key,
        ironhub_auth::unix_now() + 3600,
        Some("iothubowner"),
    )
    .unwrap();
    let ctx = AmqpContext::new(hub, 5671);
    let (client, server) = tokio::io::duplex(1 << 16);
    let peer = "127.0.0.1:1".parse().unwrap();
    tokio::spawn(ironhub_amqp::serve(server, peer, Vec::new(), ctx));

    let mut connection = Connection::builder()
        .container_id("t")
        .hostname(HOST)
        .open_with_stream(client)
        .await
        .unwrap();
    let mut session = Session::begin(&mut connection).await.unwrap();
    let mut requests = Sender::attach(&mut session, "cbs-sender", "$cbs")
        .await
        .unwrap();
    let mut application = ApplicationProperties::default();
    for (name, value) in [
        ("operation", "put-token"),
        ("type", "servicebus.windows.net:sastoken"),
        ("name", HOST),
    ] {
        application.insert(name.into(), SimpleValue::String(value.into()));
    }
    let request = Message::builder()
        .properties(Properties::builder().message_id(1u64).build())
        .application_properties(application)
        .value(Value::String(token))
        .build();
    // Settled by the server before this client attached anything to answer on.
    requests.send(request).await.unwrap();

    let mut answers = Receiver::attach(&mut session, "cbs-receiver", "$cbs")
        .await
        .unwrap();
    let answer = tokio::time::timeout(Duration::from_secs(5), answers.recv::<Body<Value>>())
        .await
        .expect("the put-token was not answered")
        .unwrap();
    answers.accept(&answer).await.unwrap();
    let status = answer
        .message()
        .application_properties
        .as_ref()
        .and_then(|p| p.get("status-code").cloned());
    assert_eq!(status, Some(SimpleValue::Int(200)));
}
