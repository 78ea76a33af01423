//! The routing document on PostgreSQL, with the endpoint leases and health the nodes
//! delivering to external endpoints share. The document is a row of `documents` (as the
//! network rules are, see `pg_network`), written compare-and-swap on its etag; a lease is
//! taken or renewed in one conditional upsert, so of nodes asking together exactly one gets
//! it. Endpoint names are kept lower-cased; times are Unix milliseconds.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use ironhub_store::{EndpointHealth, Result, RoutingRecord, RoutingStore, WriteConflict};

use crate::PgStore;
use crate::store::{corrupt, db, next_etag};

/// The `documents` key of the routing document.
const KEY: &str = "routing";

impl PgStore {
    /// The document under `key`, if one was ever written.
    pub(crate) async fn document(&self, key: &str) -> Result<Option<RoutingRecord>> {
        let row = self
            .client()
            .await?
            .query_opt(
                "SELECT doc::text, etag FROM documents WHERE key = $1",
                &[&key],
            )
            .await
            .map_err(db)?;
        row.map(|r| {
            Ok(RoutingRecord {
                doc: serde_json::from_str(r.get::<_, &str>(0)).map_err(corrupt)?,
                etag: r.get(1),
            })
        })
        .transpose()
    }

    /// Replaces the document under `key` with a new etag; with `if_match`, only if the stored
    /// etag is that one or the tag is `*` (`NotFound` when there is none and the tag is not `*`).
    pub(crate) async fn put_document(
        &self,
        key: &str,
        doc: serde_json::Value,
        if_match: Option<String>,
    ) -> Result<std::result::Result<RoutingRecord, WriteConflict>> {
        let client = self.client().await?;
        let etag = next_etag(&client).await?;
        let text = serde_json::to_string(&doc).map_err(corrupt)?;
        let record = RoutingRecord { doc, etag };
        let written = match if_match.as_deref() {
            None | Some("*") => client
                .execute(
                    "INSERT INTO documents (key, etag, doc) VALUES ($1, $2, $3::text::jsonb)
                     ON CONFLICT (key) DO UPDATE SET etag = excluded.etag, doc = excluded.doc",
                    &[&key, &record.etag, &text],
                )
                .await
                .map_err(db)?,
            Some(tag) => client
                .execute(
                    "UPDATE documents SET etag = $2, doc = $3::text::jsonb
                     WHERE key = $1 AND etag = $4",
                    &[&key, &record.etag, &text, &tag],
                )
                .await
                .map_err(db)?,
        };
        if written > 0 {
            return Ok(Ok(record));
        }
        // Nothing matched: tell a missing document from a stale tag.
        let exists = client
            .query_opt("SELECT 1 FROM documents WHERE key = $1", &[&key])
            .await
            .map_err(db)?
            .is_some();
        Ok(Err(if exists {
            WriteConflict::EtagMismatch
        } else {
            WriteConflict::NotFound
        }))
    }
}

#[async_trait]
impl RoutingStore for PgStore {
    async fn routing(&self) -> Result<Option<RoutingRecord>> {
        self.document(KEY).await
    }

    async fn put_routing(
        &self,
        doc: serde_json::Value,
        if_match: Option<String>,
    ) -> Result<std::result::Result<RoutingRecord, WriteConflict>> {
        self.put_document(KEY, doc, if_match).await
    }

    async fn lease_endpoint(
        &self,
        endpoint: &str,
        node: &str,
        now: DateTime<Utc>,
        until: DateTime<Utc>,
    ) -> Result<bool> {
        // A concurrent insert of the same name waits for the first and then sees its row, so
        // the condition is checked against the lease as committed.
        let granted = self
            .client()
            .await?
            .execute(
                "INSERT INTO endpoint_leases (endpoint, node, lease_until) VALUES ($1, $2, $4)
                 ON CONFLICT (endpoint) DO UPDATE
                 SET node = excluded.node, lease_until = excluded.lease_until
                 WHERE endpoint_leases.node = excluded.node
                    OR endpoint_leases.lease_until <= $3",
                &[
                    &endpoint.to_ascii_lowercase(),
                    &node,
                    &now.timestamp_millis(),
                    &until.timestamp_millis(),
                ],
            )
            .await
            .map_err(db)?;
        Ok(granted > 0)
    }

    async fn release_endpoint(&self, endpoint: &str, node: &str) -> Result<()> {
        self.client()
            .await?
            .execute(
                "DELETE FROM endpoint_leases WHERE endpoint = $1 AND node = $2",
                &[&endpoint.to_ascii_lowercase(), &node],
            )
            .await
            .map_err(db)?;
        Ok(())
    }

    async fn put_endpoint_health(&self, health: EndpointHealth) -> Result<()> {
        let doc = serde_json::to_string(&health).map_err(corrupt)?;
        self.client()
            .await?
            .execute(
                "INSERT INTO endpoint_health (endpoint, doc) VALUES ($1, $2::text::jsonb)
                 ON CONFLICT (endpoint) DO UPDATE SET doc = excluded.doc",
                &[&health.endpoint_id.to_ascii_lowercase(), &doc],
            )
            .await
            .map_err(db)?;
        Ok(())
    }

    async fn endpoint_health(&self) -> Result<Vec<EndpointHealth>> {
        self.client()
            .await?
            .query(
                "SELECT doc::text FROM endpoint_health ORDER BY endpoint",
                &[],
            )
            .await
            .map_err(db)?
            .iter()
            .map(|r| serde_json::from_str(r.get::<_, &str>(0)).map_err(corrupt))
            .collect()
    }
}
