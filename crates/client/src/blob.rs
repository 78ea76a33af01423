//! Azure Blob Storage calls with a SAS URL: what a device does to upload a file
//! (`ironhub device upload-file`), and the hub's look at an uploaded blob.

use std::time::Duration;

use bytes::Bytes;
use http::{Method, header};

use crate::{ClientError, StorageResponse, WebClient};

/// The `x-ms-version` sent to Azure Storage.
const STORAGE_VERSION: &str = "2021-08-06";

impl WebClient {
    /// `PUT` a block blob (Azure Storage's Put Blob) at `url`, a blob URL with a SAS that
    /// allows writing it.
    pub async fn put_blob(
        &self,
        url: &str,
        content: Vec<u8>,
        content_type: &str,
        timeout: Duration,
    ) -> Result<StorageResponse, ClientError> {
        self.exchange(
            Method::PUT,
            url,
            &[
                ("x-ms-version", STORAGE_VERSION),
                ("x-ms-blob-type", "BlockBlob"),
                (header::CONTENT_TYPE.as_str(), content_type),
            ],
            Bytes::from(content),
            timeout,
        )
        .await
    }

    /// `HEAD` a blob (Azure Storage's Get Blob Properties) at `url`, with a read SAS.
    pub async fn blob_properties(
        &self,
        url: &str,
        timeout: Duration,
    ) -> Result<StorageResponse, ClientError> {
        self.exchange(
            Method::HEAD,
            url,
            &[("x-ms-version", STORAGE_VERSION)],
            Bytes::new(),
            timeout,
        )
        .await
    }
}
