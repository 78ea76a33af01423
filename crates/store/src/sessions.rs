//! The port for persistent MQTT sessions (clean session 0).

use async_trait::async_trait;

use crate::Result;

/// The subscriptions of persistent MQTT sessions.
#[async_trait]
pub trait SessionStore: Send + Sync {
    /// The subscriptions of a persistent MQTT session (clean session 0), by client id.
    async fn mqtt_session(&self, client_id: &str) -> Result<Option<Vec<String>>>;
    /// Stores (`Some`) or discards (`None`) a persistent MQTT session.
    async fn set_mqtt_session(
        &self,
        client_id: &str,
        subscriptions: Option<Vec<String>>,
    ) -> Result<()>;
}
