//! Records the seeds of the `amqp_connection` target: what an AMQP client (fe2o3-amqp's, built
//! as the device and service SDKs and the Event Hubs clients talk) writes to the endpoint in a
//! few whole sessions, each played against the same fixture the target replays them on
//! (`ironhub_fuzz::endpoint`, whose fixed keys keep the recorded tokens valid).
//!
//!     cd fuzz && cargo run --example amqp_seeds     # writes corpus/amqp_connection/*

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use fe2o3_amqp::connection::ConnectionHandle;
use fe2o3_amqp::sasl_profile::SaslProfile;
use fe2o3_amqp::session::SessionHandle;
use fe2o3_amqp::types::messaging::SerializableBody;
use fe2o3_amqp::types::messaging::{
    ApplicationProperties, Body, Message, MessageAnnotations, Outcome, Properties, Source,
};
use fe2o3_amqp::types::primitives::{Binary, SimpleValue, Symbol, Value};
use fe2o3_amqp::{Connection, Receiver, Sender, Session};
use ironhub_auth::sas;
use ironhub_fuzz::{DEVICE, EXPIRY, HOST, KEY};
use tokio::io::{AsyncRead, AsyncWrite, DuplexStream, ReadBuf};

/// How long one answer may take before the session is recorded as it stands.
const ANSWER: Duration = Duration::from_secs(5);

/// The client's end of the stream, keeping a copy of every byte the client writes.
#[derive(Debug)]
struct Tap {
    inner: DuplexStream,
    written: Arc<Mutex<Vec<u8>>>,
}

impl AsyncRead for Tap {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for Tap {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let written = Pin::new(&mut this.inner).poll_write(cx, buf);
        if let Poll::Ready(Ok(n)) = written {
            this.written
                .lock()
                .expect("tap")
                .extend_from_slice(&buf[..n]);
        }
        written
    }
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

fn token(resource: &str, policy: Option<&str>) -> String {
    sas::generate(resource, KEY, EXPIRY, policy).expect("a SAS token")
}

fn properties(pairs: &[(&str, &str)]) -> ApplicationProperties {
    let mut properties = ApplicationProperties::default();
    for (name, value) in pairs {
        properties.insert((*name).into(), SimpleValue::String((*value).into()));
    }
    properties
}

/// A `$cbs` put-token of `token` for `audience`, waiting (bounded) for the answer.
async fn put_token(session: &mut SessionHandle<()>, audience: &str, token: String) {
    let mut requests = Sender::attach(session, "cbs-sender", "$cbs")
        .await
        .expect("$cbs sender");
    let mut answers = Receiver::attach(session, "cbs-receiver", "$cbs")
        .await
        .expect("$cbs receiver");
    let message = Message::builder()
        .properties(
            Properties::builder()
                .message_id(1u64)
                .reply_to("cbs")
                .build(),
        )
        .application_properties(properties(&[
            ("operation", "put-token"),
            ("type", "servicebus.windows.net:sastoken"),
            ("name", audience),
        ]))
        .value(Value::String(token))
        .build();
    request(
        &mut requests,
        &mut answers,
        message,
        &format!("put-token for {audience}"),
    )
    .await;
}

/// Sends the request `message` on `requests` and checks its answer on `answers` says 200.
async fn request<T: SerializableBody>(
    requests: &mut Sender,
    answers: &mut Receiver,
    message: Message<T>,
    what: &str,
) {
    requests.send(message).await.expect("request sent");
    let answer = tokio::time::timeout(ANSWER, answers.recv::<Body<Value>>())
        .await
        .expect("request answered")
        .expect("request's answer");
    let _ = answers.accept(&answer).await;
    let status = answer
        .message()
        .application_properties
        .as_ref()
        .and_then(|p| p.get("status-code").cloned());
    assert_eq!(status, Some(SimpleValue::Int(200)), "{what}");
}

/// Sends `message` and checks the endpoint accepted it.
async fn send_accepted<T: SerializableBody>(link: &mut Sender, message: Message<T>) {
    let outcome = tokio::time::timeout(ANSWER, link.send(message))
        .await
        .expect("settled in time");
    assert!(matches!(outcome, Ok(Outcome::Accepted(_))), "{outcome:?}");
}

/// A connection opened with `sasl` as container `id`, and a session begun on it.
async fn open(io: Tap, id: &str, sasl: SaslProfile) -> (ConnectionHandle<()>, SessionHandle<()>) {
    let mut connection = Connection::builder()
        .container_id(id)
        .hostname(HOST)
        .sasl_profile(sasl)
        .open_with_stream(io)
        .await
        .expect("open");
    let session = Session::begin(&mut connection).await.expect("begin");
    (connection, session)
}

/// Ends the session and closes the connection, as a client does at its end.
async fn close(mut connection: ConnectionHandle<()>, mut session: SessionHandle<()>) {
    let _ = session.end().await;
    let _ = connection.close().await;
}

/// A device logging in with SASL PLAIN, sending telemetry and listening for C2D.
async fn device_plain(io: Tap) {
    let (connection, mut session) = open(
        io,
        "seed-device-plain",
        SaslProfile::Plain {
            username: format!("{DEVICE}@sas.fuzzhub"),
            password: token(&format!("{HOST}/devices/{DEVICE}"), None),
        },
    )
    .await;
    let mut events = Sender::attach(
        &mut session,
        "events",
        format!("/devices/{DEVICE}/messages/events"),
    )
    .await
    .expect("telemetry link");
    let message = Message::builder()
        .properties(
            Properties::builder()
                .message_id(String::from("m-1"))
                .correlation_id(String::from("c-1"))
                .content_type(Symbol::from("application/json"))
                .build(),
        )
        .application_properties(properties(&[("temperature", "21.5"), ("alert", "no")]))
        .data(Binary::from(br#"{"t":21.5}"#.to_vec()))
        .build();
    send_accepted(&mut events, message).await;
    let c2d = Receiver::attach(
        &mut session,
        "c2d",
        format!("/devices/{DEVICE}/messages/devicebound"),
    )
    .await
    .expect("C2D link");
    let _ = c2d.close().await;
    let _ = events.close().await;
    close(connection, session).await;
}

/// A device logging in through `$cbs` (SASL ANONYMOUS), then its twin and method links.
async fn device_cbs(io: Tap) {
    let (connection, mut session) = open(io, "seed-device-cbs", SaslProfile::Anonymous).await;
    let audience = format!("{HOST}/devices/{DEVICE}");
    put_token(&mut session, &audience, token(&audience, None)).await;
    let mut twin = Sender::attach(
        &mut session,
        "twin-sender",
        format!("/devices/{DEVICE}/twin"),
    )
    .await
    .expect("twin sender");
    let twin_answers = Receiver::attach(
        &mut session,
        "twin-receiver",
        format!("/devices/{DEVICE}/twin"),
    )
    .await
    .expect("twin receiver");
    let get = Message::builder()
        .properties(
            Properties::builder()
                .correlation_id(String::from("twin-1"))
                .build(),
        )
        .message_annotations(
            MessageAnnotations::builder()
                .insert(Symbol::from("operation"), Value::String("GET".into()))
                .build(),
        )
        .data(Binary::from(Vec::new()))
        .build();
    let _ = tokio::time::timeout(ANSWER, twin.send(get)).await;
    let methods = Receiver::attach(
        &mut session,
        "methods",
        format!("/devices/{DEVICE}/methods/devicebound"),
    )
    .await
    .expect("methods link");
    let _ = methods.close().await;
    let _ = twin_answers.close().await;
    let _ = twin.close().await;
    close(connection, session).await;
}

/// The service side: a C2D send to the device, and the feedback receiver.
async fn service_c2d(io: Tap) {
    let (connection, mut session) = open(
        io,
        "seed-service",
        SaslProfile::Plain {
            username: "iothubowner@sas.root.fuzzhub".into(),
            password: token(HOST, Some("iothubowner")),
        },
    )
    .await;
    let mut c2d = Sender::attach(&mut session, "c2d-sender", "/messages/devicebound")
        .await
        .expect("C2D sender");
    let message = Message::builder()
        .properties(
            Properties::builder()
                .message_id(String::from("c2d-1"))
                .to(format!("/devices/{DEVICE}/messages/devicebound"))
                .build(),
        )
        .application_properties(properties(&[("iothub-ack", "full"), ("color", "red")]))
        .data(Binary::from(b"switch on".to_vec()))
        .build();
    send_accepted(&mut c2d, message).await;
    let feedback = Receiver::attach(&mut session, "feedback", "/messages/serviceBound/feedback")
        .await
        .expect("feedback link");
    let _ = feedback.close().await;
    let _ = c2d.close().await;
    close(connection, session).await;
}

/// An Event Hubs reader: `$management` READ of the entity, then a partition receiver with a
/// selector filter.
async fn eventhub_read(io: Tap, entity: String) {
    let (connection, mut session) = open(io, "seed-eventhub", SaslProfile::Anonymous).await;
    let audience = format!("sb://{HOST}/{entity}");
    put_token(&mut session, &audience, token(&audience, Some("service"))).await;
    let mut management = Sender::attach(&mut session, "mgmt-sender", "$management")
        .await
        .expect("$management sender");
    let mut answers = Receiver::attach(&mut session, "mgmt-receiver", "$management")
        .await
        .expect("$management receiver");
    let read = Message::builder()
        .properties(
            Properties::builder()
                .message_id(2u64)
                .reply_to("mgmt-receiver")
                .build(),
        )
        .application_properties(properties(&[
            ("operation", "READ"),
            ("type", "com.microsoft:eventhub"),
            ("name", &entity),
        ]))
        .value(Value::Null)
        .build();
    request(&mut management, &mut answers, read, "READ").await;
    let receiver = Receiver::builder()
        .name("partition-0")
        .source(
            Source::builder()
                .address(format!("{entity}/ConsumerGroups/$Default/Partitions/0"))
                .add_to_filter_using_legacy_format(
                    "apache.org:selector-filter:string",
                    Value::String("amqp.annotation.x-opt-offset > '-1'".into()),
                )
                .build(),
        )
        .attach(&mut session)
        .await
        .expect("partition receiver");
    let _ = receiver.close().await;
    let _ = answers.close().await;
    let _ = management.close().await;
    close(connection, session).await;
}

/// Plays `session` against the endpoint and writes what its client sent to `name`.
async fn record<F, Fut>(context: &ironhub_amqp::AmqpContext, name: &str, session: F)
where
    F: FnOnce(Tap) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let (client, server) = tokio::io::duplex(1 << 16);
    let written = Arc::new(Mutex::new(Vec::new()));
    let tap = Tap {
        inner: client,
        written: written.clone(),
    };
    let peer = SocketAddr::from(([127, 0, 0, 1], 40000));
    let serve = tokio::spawn(ironhub_amqp::serve(
        server,
        peer,
        Vec::new(),
        context.clone(),
    ));
    session(tap).await;
    let _ = tokio::time::timeout(ANSWER, serve).await;
    let bytes = written.lock().expect("tap").clone();
    let path = format!("corpus/amqp_connection/{name}");
    std::fs::write(&path, &bytes).expect("the seed is written");
    println!("{path}: {} bytes", bytes.len());
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    std::fs::create_dir_all("corpus/amqp_connection").expect("the corpus directory");
    let data = tempfile::tempdir().expect("a temporary directory");
    let context = ironhub_fuzz::endpoint(data.path()).await;
    let entity = context.entity.clone();
    record(&context, "device-plain", device_plain).await;
    record(&context, "device-cbs", device_cbs).await;
    record(&context, "service-c2d", service_c2d).await;
    record(&context, "eventhub-read", |io| eventhub_read(io, entity)).await;
}
