//! Device twins on PostgreSQL: each twin one `jsonb` document, written compare-and-swap on its
//! etag under its device's row lock, and the twin scan that queries read through, its
//! conditions pushed down as far as they can be written (`pg_twin_sql`); `GROUP BY` and `TOP`
//! are `pg_twin_aggregate`'s and `pg_twin_top`'s.

use async_trait::async_trait;

use ironhub_store::{
    DeviceTwin, Result, TwinAggregate, TwinGroup, TwinRecord, TwinScan, TwinStore, TwinTop,
    WriteConflict,
};

use crate::PgStore;
use crate::pg_twin_sql::{Params, condition_sql, device_twin_from_row};
use crate::store::{corrupt, db, lock_device, next_etag, tag_matches};

/// The scan (see `TwinStore::scan_twins`).
async fn scan(
    client: &impl deadpool_postgres::GenericClient,
    scan: &TwinScan,
    now_ms: i64,
) -> Result<Vec<DeviceTwin>> {
    let mut params = Params::default();
    let now = params.add(now_ms);
    let after = params.add(scan.after.clone().unwrap_or_default());
    let limit = params.add(i64::try_from(scan.limit).unwrap_or(i64::MAX));
    let mut terms = vec![format!("d.device_id > {after}")];
    let mut joins_twin = false;
    for c in &scan.conditions {
        if let Some((term, on_twin)) = condition_sql(c, &mut params, false) {
            terms.push(term);
            joins_twin |= on_twin;
        }
    }
    // A condition on the twin holds only for a device that has one.
    let join = if joins_twin { "JOIN" } else { "LEFT JOIN" };
    let sql = format!(
        "SELECT d.doc::text, (SELECT COUNT(*) FROM c2d_messages m
                              WHERE m.device_id = d.device_id AND m.expiry > {now}),
                t.doc::text
         FROM devices d {join} twins t ON t.device_id = d.device_id
         WHERE {} ORDER BY d.device_id LIMIT {limit}",
        terms.join(" AND ")
    );
    let rows = client.query(&sql, &params.refs()).await.map_err(db)?;
    rows.iter().map(device_twin_from_row).collect()
}

async fn load_twin(
    client: &impl deadpool_postgres::GenericClient,
    device_id: &str,
) -> Result<Option<TwinRecord>> {
    let row = client
        .query_opt(
            "SELECT doc::text FROM twins WHERE device_id = $1",
            &[&device_id],
        )
        .await
        .map_err(db)?;
    row.map(|r| serde_json::from_str(r.get::<_, &str>(0)).map_err(corrupt))
        .transpose()
}

#[async_trait]
impl TwinStore for PgStore {
    async fn get_twin(&self, device_id: &str) -> Result<Option<TwinRecord>> {
        load_twin(&self.client().await?, device_id).await
    }

    async fn put_twin(
        &self,
        twin: TwinRecord,
        if_match: Option<String>,
    ) -> Result<std::result::Result<TwinRecord, WriteConflict>> {
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(db)?;
        // The device's row lock orders every write of its twin (and its deletion): the etag
        // read below is the one the write replaces.
        if !lock_device(&tx, &twin.device_id).await? {
            return Ok(Err(WriteConflict::NotFound));
        }
        let current = load_twin(&tx, &twin.device_id)
            .await?
            .map(|t| t.etag)
            .unwrap_or_default();
        if if_match.is_some_and(|tag| !tag_matches(&current, &tag)) {
            return Ok(Err(WriteConflict::EtagMismatch));
        }
        let mut twin = twin;
        twin.etag = next_etag(&tx).await?;
        let doc = serde_json::to_string(&twin).map_err(corrupt)?;
        tx.execute(
            "INSERT INTO twins (device_id, doc) VALUES ($1, $2::text::jsonb)
             ON CONFLICT (device_id) DO UPDATE SET doc = excluded.doc",
            &[&twin.device_id, &doc],
        )
        .await
        .map_err(db)?;
        tx.commit().await.map_err(db)?;
        Ok(Ok(twin))
    }

    async fn scan_twins(&self, request: &TwinScan) -> Result<Vec<DeviceTwin>> {
        let now = self.clock.now().timestamp_millis();
        scan(&self.client().await?, request, now).await
    }

    async fn aggregate_twins(&self, request: &TwinAggregate) -> Result<Option<Vec<TwinGroup>>> {
        crate::pg_twin_aggregate::aggregate(&self.client().await?, request).await
    }

    async fn top_twins(&self, request: &TwinTop) -> Result<Option<Vec<DeviceTwin>>> {
        let now = self.clock.now().timestamp_millis();
        crate::pg_twin_top::top(&self.client().await?, request, now).await
    }
}
