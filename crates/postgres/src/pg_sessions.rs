//! Persistent MQTT sessions on PostgreSQL.

use async_trait::async_trait;
use ironhub_store::{Result, SessionStore};

use crate::PgStore;
use crate::store::{corrupt, db};

#[async_trait]
impl SessionStore for PgStore {
    async fn mqtt_session(&self, client_id: &str) -> Result<Option<Vec<String>>> {
        let row = self
            .client()
            .await?
            .query_opt(
                "SELECT doc::text FROM mqtt_sessions WHERE client_id = $1",
                &[&client_id],
            )
            .await
            .map_err(db)?;
        row.map(|r| serde_json::from_str(r.get::<_, &str>(0)).map_err(corrupt))
            .transpose()
    }

    async fn set_mqtt_session(
        &self,
        client_id: &str,
        subscriptions: Option<Vec<String>>,
    ) -> Result<()> {
        let client = self.client().await?;
        match subscriptions {
            Some(subs) => {
                let doc = serde_json::to_string(&subs).map_err(corrupt)?;
                client
                    .execute(
                        "INSERT INTO mqtt_sessions (client_id, doc) VALUES ($1, $2::text::jsonb)
                         ON CONFLICT (client_id) DO UPDATE SET doc = excluded.doc",
                        &[&client_id, &doc],
                    )
                    .await
                    .map_err(db)?;
            }
            None => {
                client
                    .execute(
                        "DELETE FROM mqtt_sessions WHERE client_id = $1",
                        &[&client_id],
                    )
                    .await
                    .map_err(db)?;
            }
        }
        Ok(())
    }
}
