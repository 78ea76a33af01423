//! Testing routes against a sample message, as ARM's `testRoute` (`$testnew`) and
//! `testAllRoutes` (`$testall`) do and `az iot hub message-route test` shows: a message
//! (body, application and system properties) and optionally a twin in; whether one route
//! matches (`true`, `false`, or `undefined` when the condition is neither), with the
//! condition's compilation errors, or which routes of a source match.

use std::collections::BTreeMap;

use ironhub_query::RoutingQuery;
use ironhub_query::routing::{MessageParts, message_view, system_property_key};
use serde_json::Value;

pub use ironhub_wire::hub::{
    CompilationError, ErrorPosition, ErrorRange, TestMessage, TestOutcome, TestRouteDetails,
    TestRouteResult,
};

use super::{Route, RoutingSource};
use crate::{Hub, HubError};

/// The routing view of a sample message.
fn sample_view(message: &TestMessage, twin: Option<&Value>) -> Value {
    let system: BTreeMap<String, String> = message
        .system_properties
        .iter()
        .map(|(k, v)| {
            let key = system_property_key(k).map_or_else(|| k.clone(), str::to_owned);
            (key, v.clone())
        })
        .collect();
    let application: BTreeMap<String, Option<String>> = message
        .app_properties
        .iter()
        .map(|(k, v)| (k.clone(), Some(v.clone())))
        .collect();
    let body = message.body.as_deref().unwrap_or("").as_bytes();
    message_view(MessageParts {
        system: &system,
        application: &application,
        body,
        twin,
    })
}

impl Hub {
    /// Tests one route (it need not be configured) against a sample message.
    pub fn test_route(
        &self,
        route: &Route,
        message: &TestMessage,
        twin: Option<&Value>,
    ) -> TestRouteResult {
        match RoutingQuery::parse(route.condition.as_deref().unwrap_or("")) {
            Ok(query) => TestRouteResult {
                result: match query.evaluate(&sample_view(message, twin)) {
                    Some(true) => TestOutcome::True,
                    Some(false) => TestOutcome::False,
                    None => TestOutcome::Undefined,
                },
                details: TestRouteDetails::default(),
            },
            Err(e) => TestRouteResult {
                result: TestOutcome::Undefined,
                details: TestRouteDetails {
                    compilation_errors: vec![CompilationError {
                        message: e.message,
                        severity: "error".into(),
                        location: ErrorRange {
                            start: ErrorPosition {
                                line: e.line,
                                column: e.column,
                            },
                            end: ErrorPosition {
                                line: e.line,
                                column: e.column,
                            },
                        },
                    }],
                },
            },
        }
    }

    /// The configured routes of `source` (enabled or not, as ARM's `testall`) whose condition
    /// is true of the sample message.
    pub async fn test_all_routes(
        &self,
        source: Option<RoutingSource>,
        message: &TestMessage,
        twin: Option<&Value>,
    ) -> Result<Vec<Route>, HubError> {
        let (config, _) = self.routing_config().await?;
        let view = sample_view(message, twin);
        Ok(config
            .routes
            .into_iter()
            .filter(|r| source.is_none_or(|s| r.source == s))
            .filter(|r| {
                RoutingQuery::parse(r.condition.as_deref().unwrap_or(""))
                    .is_ok_and(|q| q.matches(&view))
            })
            .collect())
    }
}
