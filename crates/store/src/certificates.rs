//! The CA certificate port (the hub's and the DPS instance's, see [`CertificateScope`]).

use async_trait::async_trait;

use crate::{CertificateRecord, CertificateScope, Result, WriteConflict};

/// CA certificates, written compare-and-swap on their etag.
#[async_trait]
pub trait CertificateStore: Send + Sync {
    /// One CA certificate of `scope`, by its exact name.
    async fn get_certificate(
        &self,
        scope: CertificateScope,
        name: &str,
    ) -> Result<Option<CertificateRecord>>;
    /// Every CA certificate of `scope`, ordered by name.
    async fn list_certificates(&self, scope: CertificateScope) -> Result<Vec<CertificateRecord>>;
    /// Writes a CA certificate: without `if_match` only if the name is free (else
    /// [`WriteConflict::AlreadyExists`]); with it, only if one exists (else `NotFound`) whose
    /// etag is that one or the tag is `*` (else `EtagMismatch`). Assigns a new etag.
    async fn put_certificate(
        &self,
        scope: CertificateScope,
        record: CertificateRecord,
        if_match: Option<String>,
    ) -> Result<std::result::Result<CertificateRecord, WriteConflict>>;
    /// Deletes a CA certificate; with `if_match`, only if its etag is that one (or `*`).
    async fn delete_certificate(
        &self,
        scope: CertificateScope,
        name: &str,
        if_match: Option<String>,
    ) -> Result<std::result::Result<(), WriteConflict>>;
}
