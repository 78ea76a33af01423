//! Queries paged with `x-ms-continuation`, the hub's (`POST /devices/query`, as
//! `az iot hub query` sends it) and DPS's (enrollments, groups, registrations).

use bytes::Bytes;
use http::{HeaderName, HeaderValue, Method, header};
use ironhub_wire::hub::QuerySpecification;
use serde::de::DeserializeOwned;

use crate::{ClientError, HubClient, REQUEST_TIMEOUT, header_value};

impl HubClient {
    /// `POST /devices/query`: the items of an IoT Hub query (twins, or the objects of a
    /// projection or aggregate), page after page until the answer ends or `top` are read.
    pub async fn query_twins(
        &self,
        query: &str,
        top: Option<usize>,
    ) -> Result<Vec<serde_json::Value>, ClientError> {
        let spec = QuerySpecification {
            query: query.to_owned(),
        };
        self.query_pages("/devices/query", Some(&spec), top).await
    }

    /// A query, page after page while the answer carries `x-ms-continuation`, asking for at
    /// most what `top` still needs (as az's `_execute_query`).
    pub(crate) async fn query_pages<T: DeserializeOwned>(
        &self,
        path: &str,
        spec: Option<&QuerySpecification>,
        top: Option<usize>,
    ) -> Result<Vec<T>, ClientError> {
        let mut items = Vec::new();
        let mut continuation: Option<String> = None;
        let body = match spec {
            Some(spec) => Bytes::from(
                serde_json::to_vec(spec).map_err(|e| ClientError::InvalidRequest(e.to_string()))?,
            ),
            None => Bytes::new(),
        };
        loop {
            let mut headers = vec![(
                header::CACHE_CONTROL,
                HeaderValue::from_static("no-cache, must-revalidate"),
            )];
            if spec.is_some() {
                headers.push((
                    header::CONTENT_TYPE,
                    HeaderValue::from_static("application/json; charset=utf-8"),
                ));
            }
            if let Some(top) = top {
                let wanted = top.saturating_sub(items.len());
                headers.push((
                    HeaderName::from_static("x-ms-max-item-count"),
                    HeaderValue::from(wanted),
                ));
            }
            if let Some(token) = &continuation {
                headers.push((
                    HeaderName::from_static("x-ms-continuation"),
                    header_value(token)?,
                ));
            }
            let response = self
                .request_raw(
                    Method::POST,
                    path,
                    &[],
                    headers,
                    body.clone(),
                    REQUEST_TIMEOUT,
                )
                .await?;
            let page: Vec<T> = response.json().map_err(|e| ClientError::InvalidResponse {
                status: response.status,
                detail: format!("the answer to POST {path} is not a list of records: {e}"),
            })?;
            items.extend(page);
            continuation = response
                .header("x-ms-continuation")
                .map(str::trim)
                .filter(|t| !t.is_empty())
                .map(str::to_owned);
            let full = top.is_some_and(|top| items.len() >= top);
            if continuation.is_none() || full {
                break;
            }
        }
        if let Some(top) = top {
            items.truncate(top);
        }
        Ok(items)
    }
}
