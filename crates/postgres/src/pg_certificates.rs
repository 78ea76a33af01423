//! CA certificates on PostgreSQL, written compare-and-swap on their etag.

use async_trait::async_trait;
use ironhub_store::{CertificateRecord, CertificateScope, CertificateStore, Result, WriteConflict};

use crate::PgStore;
use crate::store::{corrupt, db, next_etag, tag_matches};

fn table(scope: CertificateScope) -> &'static str {
    match scope {
        CertificateScope::Hub => "certificates",
        CertificateScope::Dps => "dps_certificates",
    }
}

/// The stored certificate, locked until the transaction ends (`lock`).
async fn load(
    client: &impl deadpool_postgres::GenericClient,
    scope: CertificateScope,
    name: &str,
    lock: bool,
) -> Result<Option<CertificateRecord>> {
    let sql = format!(
        "SELECT doc::text FROM {} WHERE name = $1{}",
        table(scope),
        if lock { " FOR UPDATE" } else { "" }
    );
    let row = client.query_opt(&sql, &[&name]).await.map_err(db)?;
    row.map(|r| serde_json::from_str(r.get::<_, &str>(0)).map_err(corrupt))
        .transpose()
}

#[async_trait]
impl CertificateStore for PgStore {
    async fn get_certificate(
        &self,
        scope: CertificateScope,
        name: &str,
    ) -> Result<Option<CertificateRecord>> {
        load(&self.client().await?, scope, name, false).await
    }

    async fn list_certificates(&self, scope: CertificateScope) -> Result<Vec<CertificateRecord>> {
        let sql = format!(
            "SELECT doc::text FROM {} ORDER BY name COLLATE \"C\"",
            table(scope)
        );
        let rows = self.client().await?.query(&sql, &[]).await.map_err(db)?;
        rows.iter()
            .map(|r| serde_json::from_str(r.get::<_, &str>(0)).map_err(corrupt))
            .collect()
    }

    async fn put_certificate(
        &self,
        scope: CertificateScope,
        mut record: CertificateRecord,
        if_match: Option<String>,
    ) -> Result<std::result::Result<CertificateRecord, WriteConflict>> {
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(db)?;
        record.etag = next_etag(&tx).await?;
        let doc = serde_json::to_string(&record).map_err(corrupt)?;
        match if_match {
            None => {
                // Only a free name: a concurrent create of the same name inserts nothing.
                let sql = format!(
                    "INSERT INTO {} (name, doc) VALUES ($1, $2::text::jsonb)
                     ON CONFLICT (name) DO NOTHING",
                    table(scope)
                );
                if tx.execute(&sql, &[&record.name, &doc]).await.map_err(db)? == 0 {
                    return Ok(Err(WriteConflict::AlreadyExists));
                }
            }
            Some(tag) => {
                match load(&tx, scope, &record.name, true).await? {
                    None => return Ok(Err(WriteConflict::NotFound)),
                    Some(c) if !tag_matches(&c.etag, &tag) => {
                        return Ok(Err(WriteConflict::EtagMismatch));
                    }
                    Some(_) => {}
                }
                let sql = format!(
                    "UPDATE {} SET doc = $2::text::jsonb WHERE name = $1",
                    table(scope)
                );
                tx.execute(&sql, &[&record.name, &doc]).await.map_err(db)?;
            }
        }
        tx.commit().await.map_err(db)?;
        Ok(Ok(record))
    }

    async fn delete_certificate(
        &self,
        scope: CertificateScope,
        name: &str,
        if_match: Option<String>,
    ) -> Result<std::result::Result<(), WriteConflict>> {
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(db)?;
        match load(&tx, scope, name, true).await? {
            None => return Ok(Err(WriteConflict::NotFound)),
            Some(c)
                if if_match
                    .as_deref()
                    .is_some_and(|tag| !tag_matches(&c.etag, tag)) =>
            {
                return Ok(Err(WriteConflict::EtagMismatch));
            }
            Some(_) => {}
        }
        let sql = format!("DELETE FROM {} WHERE name = $1", table(scope));
        tx.execute(&sql, &[&name]).await.map_err(db)?;
        tx.commit().await.map_err(db)?;
        Ok(Ok(()))
    }
}
