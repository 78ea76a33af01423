//! Azure Blob Storage calls with a SAS URL: what a device does to upload a file
//! (`ironhub device upload-file`), and the hub's look at an uploaded blob.

use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, Method, Request, header};
use http_body_util::{BodyExt as _, Full};

use crate::{ClientError, WebClient, tls};

/// The `x-ms-version` sent to Azure Storage.
const STORAGE_VERSION: &str = "2021-08-06";

/// The answer of a storage call: status, headers and body.
#[derive(Debug, Clone)]
pub struct StorageResponse {
    pub status: u16,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl WebClient {
    /// One storage request to `url` (which carries a SAS), within `timeout`, whatever the
    /// answer's status.
    async fn storage(
        &self,
        method: Method,
        url: &str,
        headers: &[(&str, &str)],
        body: Bytes,
        timeout: Duration,
    ) -> Result<StorageResponse, ClientError> {
        let host = url
            .split_once("://")
            .map_or(url, |(_, rest)| rest)
            .split(['/', '?'])
            .next()
            .unwrap_or_default()
            .to_owned();
        let mut request = Request::builder()
            .method(method)
            .uri(url)
            .header("x-ms-version", STORAGE_VERSION)
            .header(
                header::USER_AGENT,
                concat!("ironhub/", env!("CARGO_PKG_VERSION")),
            );
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let request = request
            .body(Full::new(body))
            .map_err(|e| ClientError::InvalidRequest(format!("cannot call {host}: {e}")))?;
        let exchange = async {
            let response = self
                .http
                .request(request)
                .await
                .map_err(|e| tls::classify(&host, &e))?;
            let (parts, body) = response.into_parts();
            let body = body
                .collect()
                .await
                .map_err(|e| tls::classify(&host, &e))?
                .to_bytes();
            Ok::<_, ClientError>(StorageResponse {
                status: parts.status.as_u16(),
                headers: parts.headers,
                body,
            })
        };
        tokio::time::timeout(timeout, exchange)
            .await
            .map_err(|_| ClientError::Timeout {
                host: host.clone(),
                seconds: timeout.as_secs(),
            })?
    }

    /// `PUT` a block blob (Azure Storage's Put Blob) at `url`, a blob URL with a SAS that
    /// allows writing it.
    pub async fn put_blob(
        &self,
        url: &str,
        content: Vec<u8>,
        content_type: &str,
        timeout: Duration,
    ) -> Result<StorageResponse, ClientError> {
        self.storage(
            Method::PUT,
            url,
            &[
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
        self.storage(Method::HEAD, url, &[], Bytes::new(), timeout)
            .await
    }
}
