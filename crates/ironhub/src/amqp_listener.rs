//! AMQP over TLS (5671) on the shared TLS accept loop: each admitted connection becomes an
//! AMQP connection of the hub's endpoint (CBS, the Event Hubs-compatible endpoint).

use ironhub_amqp::AmqpContext;
use ironhub_tls::{AcceptLoop, Accepted};
use tokio::net::TcpListener;
use tokio::sync::watch;

/// Serves AMQP connections on `listener` until `shutdown`; open connections end with the
/// process (clients reconnect).
pub async fn serve(
    listener: TcpListener,
    accept: AcceptLoop,
    ctx: AmqpContext,
    shutdown: watch::Receiver<bool>,
) {
    accept
        .run(listener, shutdown, move |connection: Accepted, _| {
            let certificates = connection
                .client_certificates
                .iter()
                .map(|c| c.to_vec())
                .collect();
            ironhub_amqp::serve(
                connection.stream,
                connection.peer,
                certificates,
                AmqpContext {
                    private_endpoint: connection.private_endpoint,
                    ..ctx.clone()
                },
            )
        })
        .await;
}
