//! Message routing: ironhub's `/routing` paths (the routing document with its etag, and
//! ARM's route tests), as `ironhub hub message-route …` and `message-endpoint …` use them.

use bytes::Bytes;
use http::{HeaderValue, Method, header};
use ironhub_wire::hub::{
    EndpointHealthList, RoutingConfig, TestAllRoutesInput, TestAllRoutesResult, TestRouteInput,
    TestRouteResult,
};

use crate::{ClientError, HubClient, REQUEST_TIMEOUT, header_value, quote_etag};

impl HubClient {
    /// `GET /routing`: the routing document and its etag (none before one was written).
    pub async fn get_routing(&self) -> Result<(RoutingConfig, Option<String>), ClientError> {
        let response = self
            .request_raw(
                Method::GET,
                "/routing",
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

    /// `GET /routingEndpointsHealth`: the health of the external endpoints (ARM's shape).
    pub async fn endpoint_health(&self) -> Result<EndpointHealthList, ClientError> {
        self.request_raw(
            Method::GET,
            "/routingEndpointsHealth",
            &[],
            vec![],
            Bytes::new(),
            REQUEST_TIMEOUT,
        )
        .await?
        .json()
    }

    /// `PUT /routing`: replaces the routing document, compare-and-swap on `if_match`.
    pub async fn put_routing(
        &self,
        config: &RoutingConfig,
        if_match: Option<&str>,
    ) -> Result<RoutingConfig, ClientError> {
        let mut headers = vec![(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json; charset=utf-8"),
        )];
        if let Some(etag) = if_match {
            headers.push((header::IF_MATCH, header_value(&quote_etag(etag))?));
        }
        let body = serde_json::to_vec(config).map_err(|e| ClientError::Transport {
            host: self.host_name().to_owned(),
            detail: format!("cannot encode the request body: {e}"),
        })?;
        self.request_raw(
            Method::PUT,
            "/routing",
            &[],
            headers,
            Bytes::from(body),
            REQUEST_TIMEOUT,
        )
        .await?
        .json()
    }

    /// `POST /routing/routes/$testnew`: one route against a sample message.
    pub async fn test_route(&self, input: &TestRouteInput) -> Result<TestRouteResult, ClientError> {
        self.request(
            Method::POST,
            "/routing/routes/$testnew",
            &[],
            Some(input),
            None,
        )
        .await
    }

    /// `POST /routing/routes/$testall`: the configured routes a sample message matches.
    pub async fn test_all_routes(
        &self,
        input: &TestAllRoutesInput,
    ) -> Result<TestAllRoutesResult, ClientError> {
        self.request(
            Method::POST,
            "/routing/routes/$testall",
            &[],
            Some(input),
            None,
        )
        .await
    }
}
