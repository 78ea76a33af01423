//! IoT Plug and Play's digital-twin API (`/digitaltwins/{id}`), as the service SDKs'
//! `DigitalTwinClient` calls it (api-version 2021-04-12).

use std::time::Duration;

use bytes::Bytes;
use http::{HeaderValue, Method, header};
use serde_json::{Value, json};

use ironhub_auth::sas::url_encode;

use crate::{ClientError, HubClient};

/// One path segment, percent-encoded.
fn segment(s: &str) -> String {
    url_encode(s)
}

fn digital_twin_path(id: &str) -> String {
    format!("/digitaltwins/{}", segment(id))
}

/// Where a command goes, and how long the hub waits.
#[derive(Debug, Clone, Default)]
pub struct Command<'a> {
    /// The component, for a component's command.
    pub component: Option<&'a str>,
    pub name: &'a str,
    pub payload: Value,
    pub connect_timeout: Option<u64>,
    pub response_timeout: Option<u64>,
}

impl HubClient {
    /// `GET /digitaltwins/{id}`.
    pub async fn get_digital_twin(&self, id: &str) -> Result<Value, ClientError> {
        self.request(
            Method::GET,
            &digital_twin_path(id),
            &[],
            crate::NO_BODY,
            None,
        )
        .await
    }

    /// `PATCH /digitaltwins/{id}` with a JSON Patch; `If-Match` is the etag, or `*`. Returns
    /// the twin's new etag.
    pub async fn update_digital_twin(
        &self,
        id: &str,
        patch: &Value,
        etag: Option<&str>,
    ) -> Result<Option<String>, ClientError> {
        let mut headers = vec![(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json; charset=utf-8"),
        )];
        // As az: any etag unless one is given.
        let etag = crate::quote_etag(etag.unwrap_or("*"));
        headers.push((header::IF_MATCH, crate::header_value(&etag)?));
        let body = serde_json::to_vec(patch).map_err(|e| ClientError::Transport {
            host: self.host.clone(),
            detail: format!("cannot encode the patch: {e}"),
        })?;
        let response = self
            .request_raw(
                Method::PATCH,
                &digital_twin_path(id),
                &[],
                headers,
                Bytes::from(body),
                crate::REQUEST_TIMEOUT,
            )
            .await?;
        Ok(response
            .header("etag")
            .map(|e| e.trim_matches('"').to_owned()))
    }

    /// `POST /digitaltwins/{id}[/components/{component}]/commands/{name}`: returns, as
    /// `az iot hub digital-twin invoke-command` prints it, `{"payload": <the device's answer>,
    /// "status": "<x-ms-command-statuscode>"}`.
    pub async fn invoke_command(
        &self,
        id: &str,
        command: &Command<'_>,
    ) -> Result<Value, ClientError> {
        let mut path = digital_twin_path(id);
        if let Some(c) = command.component {
            path.push_str(&format!("/components/{}", segment(c)));
        }
        path.push_str(&format!("/commands/{}", segment(command.name)));
        let mut query = Vec::new();
        if let Some(s) = command.connect_timeout {
            query.push(("connectTimeoutInSeconds", s.to_string()));
        }
        if let Some(s) = command.response_timeout {
            query.push(("responseTimeoutInSeconds", s.to_string()));
        }
        let body = serde_json::to_vec(&command.payload).map_err(|e| ClientError::Transport {
            host: self.host.clone(),
            detail: format!("cannot encode the payload: {e}"),
        })?;
        let wait =
            command.response_timeout.unwrap_or(30).max(30) + command.connect_timeout.unwrap_or(0);
        let response = self
            .request_raw(
                Method::POST,
                &path,
                &query,
                vec![(
                    header::CONTENT_TYPE,
                    HeaderValue::from_static("application/json; charset=utf-8"),
                )],
                Bytes::from(body),
                Duration::from_secs(wait + 15),
            )
            .await?;
        // As az prints it: the header's text.
        let status = response
            .header("x-ms-command-statuscode")
            .map(str::to_owned);
        Ok(json!({ "payload": response.json::<Value>()?, "status": status }))
    }
}
