//! What every link the client sends on shares: waiting for its next message while the
//! connection lives.

use fe2o3_amqp::Receiver;
use fe2o3_amqp::link::delivery::Delivery;
use fe2o3_amqp::types::messaging::Body;
use fe2o3_amqp::types::primitives::Value;
use tokio::sync::watch;

/// The next message the client sends on `receiver`; `None` once the link or the connection
/// is gone.
pub(crate) async fn next_delivery(
    receiver: &mut Receiver,
    closed: &mut watch::Receiver<bool>,
) -> Option<Delivery<Body<Value>>> {
    tokio::select! {
        d = receiver.recv::<Body<Value>>() => match d {
            Ok(d) => Some(d),
            Err(e) => {
                tracing::debug!(error = ?e, "an AMQP link the client sends on ended");
                None
            }
        },
        _ = closed.changed() => None,
    }
}
