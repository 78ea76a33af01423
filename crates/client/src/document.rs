//! A JSON document the server keeps whole with an etag (the routing document, the network
//! rules): read it with its etag, replace it compare-and-swap.

use bytes::Bytes;
use http::{HeaderValue, Method, header};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::{ClientError, HubClient, REQUEST_TIMEOUT, header_value, quote_etag};

impl HubClient {
    /// `GET {path}`: the document and its etag (none before one was written).
    pub(crate) async fn get_document<T: DeserializeOwned>(
        &self,
        path: &str,
    ) -> Result<(T, Option<String>), ClientError> {
        let response = self
            .request_raw(
                Method::GET,
                path,
                &[],
                vec![],
                Bytes::new(),
                REQUEST_TIMEOUT,
            )
            .await?;
        let etag = response
            .header("etag")
            .map(|e| e.trim_matches('"').to_owned());
        Ok((response.json()?, etag))
    }

    /// `PUT {path}`: replaces the document, compare-and-swap on `if_match`; the document as
    /// stored.
    pub(crate) async fn put_document<T: Serialize + DeserializeOwned>(
        &self,
        path: &str,
        document: &T,
        if_match: Option<&str>,
    ) -> Result<T, ClientError> {
        let mut headers = vec![(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json; charset=utf-8"),
        )];
        if let Some(etag) = if_match {
            headers.push((header::IF_MATCH, header_value(&quote_etag(etag))?));
        }
        let body = serde_json::to_vec(document).map_err(|e| ClientError::Transport {
            host: self.host_name().to_owned(),
            detail: format!("cannot encode the request body: {e}"),
        })?;
        self.request_raw(
            Method::PUT,
            path,
            &[],
            headers,
            Bytes::from(body),
            REQUEST_TIMEOUT,
        )
        .await?
        .json()
    }
}
