//! Azure Storage accounts, as a hub's file upload uses them: the account's connection string,
//! and service SAS tokens for one blob (Azure Storage's "Create a service SAS": an HMAC-SHA256,
//! with the account key, over the string-to-sign of signed version 2020-12-06 and later).

use ring::hmac;

use crate::sas::url_encode;

/// The signed version (`sv`) of the SAS tokens made here.
pub const SAS_VERSION: &str = "2021-08-06";

/// Azurite's (and the old storage emulator's) well-known development account.
const DEV_ACCOUNT: &str = "devstoreaccount1";
const DEV_KEY: &str =
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==";

/// Why a storage connection string was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StorageError {
    #[error("the storage connection string has no {0}")]
    Missing(&'static str),
    #[error("the storage connection string's {0} is not valid")]
    Invalid(&'static str),
}

/// A storage account: its name, its key and where its blob service is.
#[derive(Clone, PartialEq, Eq)]
pub struct StorageAccount {
    pub name: String,
    key: Vec<u8>,
    /// The blob service's base URL, without a trailing `/`: `https://{name}.blob.core.windows.net`,
    /// or a `BlobEndpoint` such as `https://127.0.0.1:10000/devstoreaccount1` (Azurite).
    pub blob_endpoint: String,
}

impl std::fmt::Debug for StorageAccount {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StorageAccount")
            .field("name", &self.name)
            .field("blob_endpoint", &self.blob_endpoint)
            .finish_non_exhaustive()
    }
}

impl StorageAccount {
    /// Parses an Azure Storage connection string (`DefaultEndpointsProtocol=https;
    /// AccountName=…;AccountKey=…;EndpointSuffix=core.windows.net`, with an optional
    /// `BlobEndpoint=…`), or `UseDevelopmentStorage=true` (Azurite on 127.0.0.1:10000).
    pub fn parse(connection_string: &str) -> Result<StorageAccount, StorageError> {
        let mut fields = std::collections::HashMap::new();
        for part in connection_string.split(';').map(str::trim) {
            if part.is_empty() {
                continue;
            }
            let (k, v) = part
                .split_once('=')
                .ok_or(StorageError::Invalid("format"))?;
            fields.insert(k.trim().to_ascii_lowercase(), v.trim().to_owned());
        }
        let get = |k: &str| fields.get(k).map(String::as_str);
        if get("usedevelopmentstorage").is_some_and(|v| v.eq_ignore_ascii_case("true")) {
            return StorageAccount::with_key(
                DEV_ACCOUNT,
                DEV_KEY,
                format!("http://127.0.0.1:10000/{DEV_ACCOUNT}"),
            );
        }
        let name = get("accountname").ok_or(StorageError::Missing("AccountName"))?;
        let key = get("accountkey").ok_or(StorageError::Missing("AccountKey"))?;
        let endpoint = match get("blobendpoint") {
            Some(e) => e.trim_end_matches('/').to_owned(),
            None => {
                let protocol = get("defaultendpointsprotocol").unwrap_or("https");
                let suffix = get("endpointsuffix").unwrap_or("core.windows.net");
                format!("{protocol}://{name}.blob.{suffix}")
            }
        };
        StorageAccount::with_key(name, key, endpoint)
    }

    fn with_key(name: &str, key: &str, endpoint: String) -> Result<StorageAccount, StorageError> {
        if name.is_empty() || !name.bytes().all(|b| b.is_ascii_alphanumeric()) {
            return Err(StorageError::Invalid("AccountName"));
        }
        let key = crate::b64::decode(key)
            .ok()
            .filter(|k| !k.is_empty())
            .ok_or(StorageError::Invalid("AccountKey"))?;
        if !(endpoint.starts_with("https://") || endpoint.starts_with("http://"))
            || endpoint
                .split_once("://")
                .is_some_and(|(_, h)| h.is_empty())
        {
            return Err(StorageError::Invalid("BlobEndpoint"));
        }
        Ok(StorageAccount {
            name: name.to_owned(),
            key,
            blob_endpoint: endpoint,
        })
    }

    /// The blob service as IoT Hub names it to a device (`hostName`): the endpoint without its
    /// scheme, e.g. `myaccount.blob.core.windows.net` or `127.0.0.1:10000/devstoreaccount1`.
    pub fn blob_host(&self) -> &str {
        self.blob_endpoint
            .split_once("://")
            .map_or(self.blob_endpoint.as_str(), |(_, rest)| rest)
    }

    /// The URL of a blob (its name's segments percent-encoded).
    pub fn blob_url(&self, container: &str, blob: &str) -> String {
        let blob: Vec<String> = blob.split('/').map(url_encode).collect();
        format!(
            "{}/{}/{}",
            self.blob_endpoint,
            url_encode(container),
            blob.join("/")
        )
    }

    /// A service SAS for one blob (`sr=b`), as a query string starting with `?`: permissions
    /// `permissions` (e.g. `rw`), valid from `start` to `expiry` (ISO 8601 UTC, seconds
    /// precision, e.g. `2024-05-01T12:00:00Z`), HTTPS only when the endpoint is HTTPS.
    pub fn blob_sas(
        &self,
        container: &str,
        blob: &str,
        permissions: &str,
        start: &str,
        expiry: &str,
    ) -> String {
        let resource = format!("/blob/{}/{container}/{blob}", self.name);
        let protocol = if self.blob_endpoint.starts_with("https://") {
            "https"
        } else {
            "https,http"
        };
        // sp, st, se, canonicalized resource, si, sip, spr, sv, sr, snapshot time, encryption
        // scope, rscc, rscd, rsce, rscl, rsct.
        let string_to_sign = [
            permissions,
            start,
            expiry,
            &resource,
            "",
            "",
            protocol,
            SAS_VERSION,
            "b",
            "",
            "",
            "",
            "",
            "",
            "",
            "",
        ]
        .join("\n");
        let key = hmac::Key::new(hmac::HMAC_SHA256, &self.key);
        let signature = crate::b64::encode(hmac::sign(&key, string_to_sign.as_bytes()).as_ref());
        format!(
            "?st={}&se={}&sp={}&spr={}&sv={SAS_VERSION}&sr=b&sig={}",
            url_encode(start),
            url_encode(expiry),
            url_encode(permissions),
            url_encode(protocol),
            url_encode(&signature)
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connection_strings() {
        let a = StorageAccount::parse(
            "DefaultEndpointsProtocol=https;AccountName=acct1;AccountKey=a2V5;EndpointSuffix=core.windows.net",
        )
        .unwrap();
        assert_eq!(a.blob_endpoint, "https://acct1.blob.core.windows.net");
        assert_eq!(a.blob_host(), "acct1.blob.core.windows.net");
        assert!(!format!("{a:?}").contains("a2V5"));

        let azurite = StorageAccount::parse(&format!(
            "DefaultEndpointsProtocol=https;AccountName={DEV_ACCOUNT};AccountKey={DEV_KEY};BlobEndpoint=https://127.0.0.1:10000/{DEV_ACCOUNT}/;"
        ))
        .unwrap();
        assert_eq!(azurite.blob_host(), "127.0.0.1:10000/devstoreaccount1");
        assert_eq!(
            azurite.blob_url("uploads", "dev 1/a.txt"),
            "https://127.0.0.1:10000/devstoreaccount1/uploads/dev%201/a.txt"
        );
        let dev = StorageAccount::parse("UseDevelopmentStorage=true").unwrap();
        assert_eq!(dev.name, DEV_ACCOUNT);

        for bad in [
            "",
            "AccountName=a",
            "AccountName=a;AccountKey=!!",
            "AccountName=a-b;AccountKey=a2V5",
            "AccountName=a;AccountKey=a2V5;BlobEndpoint=ftp://x",
            "garbage",
        ] {
            assert!(StorageAccount::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn blob_sas_matches_the_storage_sdk() {
        // The token azure-storage-blob 12.31.1 makes for the same blob, times and permissions
        // (`BlobSharedAccessSignature.generate_blob` with `x_ms_version` set to 2021-08-06 and
        // `protocol="https"`).
        let a = StorageAccount::parse(&format!(
            "AccountName={DEV_ACCOUNT};AccountKey={DEV_KEY};BlobEndpoint=https://127.0.0.1:10000/{DEV_ACCOUNT}"
        ))
        .unwrap();
        let sas = a.blob_sas(
            "uploads",
            "dev1/hello.txt",
            "rw",
            "2024-05-01T12:00:00Z",
            "2024-05-01T13:00:00Z",
        );
        assert_eq!(sas, EXPECTED_SAS);
    }

    const EXPECTED_SAS: &str = "?st=2024-05-01T12%3A00%3A00Z&se=2024-05-01T13%3A00%3A00Z&sp=rw&spr=https&sv=2021-08-06&sr=b&sig=aqDHzcKiRcRiVJIvPmf6BR88IrtkHraa20krOiuhSBI%3D";
}
