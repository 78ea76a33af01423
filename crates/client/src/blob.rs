//! Azure Blob Storage calls with a SAS URL: what a device does to upload a file
//! (`ironhub device upload-file`), the hub's look at an uploaded blob, and the blobs of
//! import and export jobs (Get Blob; Put Block and Put Block List for large ones).

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

    /// `GET` a blob (Azure Storage's Get Blob) at `url`, with a read SAS.
    pub async fn get_blob(
        &self,
        url: &str,
        timeout: Duration,
    ) -> Result<StorageResponse, ClientError> {
        self.exchange(
            Method::GET,
            url,
            &[("x-ms-version", STORAGE_VERSION)],
            Bytes::new(),
            timeout,
        )
        .await
    }

    /// Uploads one block of a block blob (Azure Storage's Put Block): `url` is the blob's
    /// URL with its SAS, `block_id` the block's id, base64 (every id of a blob the same
    /// length).
    pub async fn put_block(
        &self,
        url: &str,
        block_id: &str,
        content: Bytes,
        timeout: Duration,
    ) -> Result<StorageResponse, ClientError> {
        let url = with_query(
            url,
            &format!("comp=block&blockid={}", encode_query(block_id)),
        );
        self.exchange(
            Method::PUT,
            &url,
            &[("x-ms-version", STORAGE_VERSION)],
            content,
            timeout,
        )
        .await
    }

    /// Commits the blocks `block_ids` (uploaded with [`WebClient::put_block`]) as the blob
    /// at `url`, in that order (Azure Storage's Put Block List).
    pub async fn put_block_list(
        &self,
        url: &str,
        block_ids: &[String],
        content_type: &str,
        timeout: Duration,
    ) -> Result<StorageResponse, ClientError> {
        let url = with_query(url, "comp=blocklist");
        let mut body = String::from("<?xml version=\"1.0\" encoding=\"utf-8\"?><BlockList>");
        for id in block_ids {
            body.push_str("<Latest>");
            body.push_str(id);
            body.push_str("</Latest>");
        }
        body.push_str("</BlockList>");
        self.exchange(
            Method::PUT,
            &url,
            &[
                ("x-ms-version", STORAGE_VERSION),
                ("x-ms-blob-content-type", content_type),
                (header::CONTENT_TYPE.as_str(), "application/xml"),
            ],
            Bytes::from(body),
            timeout,
        )
        .await
    }
}

/// `url` with `extra` appended to its query.
fn with_query(url: &str, extra: &str) -> String {
    if url.contains('?') {
        format!("{url}&{extra}")
    } else {
        format!("{url}?{extra}")
    }
}

/// A query value with the characters base64 uses that a query cannot hold escaped.
fn encode_query(value: &str) -> String {
    value
        .replace('%', "%25")
        .replace('+', "%2B")
        .replace('/', "%2F")
        .replace('=', "%3D")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn block_ids_are_escaped_into_the_sas_query() {
        assert_eq!(
            with_query("http://h/a/c/b?sv=1&sig=x", "comp=block"),
            "http://h/a/c/b?sv=1&sig=x&comp=block"
        );
        assert_eq!(
            with_query("file:///b", "comp=block"),
            "file:///b?comp=block"
        );
        assert_eq!(encode_query("YWI+/w=="), "YWI%2B%2Fw%3D%3D");
    }
}
