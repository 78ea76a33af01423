//! Message routing: ironhub's `/routing` paths (the routing document with its etag, and
//! ARM's route tests), as `ironhub hub message-route …` and `message-endpoint …` use them.

use bytes::Bytes;
use http::Method;
use ironhub_wire::hub::{
    EndpointHealthList, RoutingConfig, TestAllRoutesInput, TestAllRoutesResult, TestRouteInput,
    TestRouteResult,
};

use crate::{ClientError, HubClient, REQUEST_TIMEOUT};

impl HubClient {
    /// `GET /routing`: the routing document and its etag (none before one was written).
    pub async fn get_routing(&self) -> Result<(RoutingConfig, Option<String>), ClientError> {
        self.get_document("/routing").await
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
        self.put_document("/routing", config, if_match).await
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
