//! Message routing through the domain API on the embedded engine: routes with conditions on
//! properties, body and twin, enrichments, the fallback route, one append per endpoint, the
//! hub's own events, and bad documents refused whole.
#![allow(clippy::unwrap_used)]

mod common;

use std::sync::Arc;

use common::{authenticated, temp_hub};
use ironhub_embedded::SqliteEventStreams;
use ironhub_hub::model::DeviceSpec;
use ironhub_hub::routing::RoutingConfig;
use ironhub_hub::{Hub, HubError, SystemProperties, Telemetry};
use ironhub_store::Event;
use serde_json::json;

async fn routed_hub() -> (Hub, tempfile::TempDir) {
    let (hub, dir) = temp_hub().await;
    let streams = SqliteEventStreams::open(&dir.path().join("streams")).unwrap();
    (hub.with_event_streams(Arc::new(streams)), dir)
}

fn config(doc: serde_json::Value) -> RoutingConfig {
    serde_json::from_value(doc).unwrap()
}

fn json_message(body: &str, props: &[(&str, &str)]) -> Telemetry {
    Telemetry {
        system: SystemProperties {
            content_type: Some("application/json".into()),
            content_encoding: Some("utf-8".into()),
            ..SystemProperties::default()
        },
        application: props
            .iter()
            .map(|(k, v)| ((*k).to_owned(), Some((*v).to_owned())))
            .collect(),
        body: body.as_bytes().to_vec(),
        ..Telemetry::default()
    }
}

/// Every event of a stream endpoint (all partitions).
async fn read_endpoint(hub: &Hub, endpoint: &str) -> Vec<Event> {
    let view = hub.for_endpoint(Some(endpoint)).await.unwrap();
    let log = view.events();
    let mut out = Vec::new();
    for p in 0..log.partition_count() {
        out.extend(log.read(p, 0, 1000).await.unwrap());
    }
    out
}

/// Every event of a stream endpoint in the order it was enqueued.
async fn read_in_order(hub: &Hub, endpoint: &str) -> Vec<Event> {
    let mut events = read_endpoint(hub, endpoint).await;
    events.sort_by_key(|e| e.enqueued_time);
    events
}

/// The `opType` of each of the hub's events.
fn op_types(events: &[Event]) -> Vec<&str> {
    events
        .iter()
        .map(|e| e.event.application_properties["opType"].as_deref().unwrap())
        .collect()
}

#[tokio::test]
async fn routes_select_endpoints_by_condition_with_enrichments_and_fallback() {
    let (hub, _dir) = routed_hub().await;
    hub.put_device("d1", &DeviceSpec::default(), None)
        .await
        .unwrap();
    hub.update_twin("d1", &json!({"tags": {"site": "plant-1"}}), None, false)
        .await
        .unwrap();
    let doc = config(json!({
        "endpoints": {"eventHubs": [{"name": "Hot", "partitionCount": 2}, {"name": "cold"}]},
        "routes": [
            {"name": "hot", "source": "DeviceMessages", "condition": "$body.t > 30", "endpointNames": ["hot"], "isEnabled": true},
            {"name": "hot-too", "source": "DeviceMessages", "condition": "level = 'critical'", "endpointNames": ["Hot"], "isEnabled": true},
            {"name": "site", "source": "DeviceMessages", "condition": "$twin.tags.site = 'plant-1' AND level = 'info'", "endpointNames": ["cold"], "isEnabled": true},
            {"name": "off", "source": "DeviceMessages", "condition": "true", "endpointNames": ["cold"], "isEnabled": false}
        ],
        "enrichments": [
            {"key": "site", "value": "$twin.tags.site", "endpointNames": ["hot"]},
            {"key": "hub", "value": "$iothubname", "endpointNames": ["hot", "events"]},
            {"key": "missing", "value": "$twin.tags.nope", "endpointNames": ["hot"]}
        ]
    }));
    hub.set_routing_config(doc, None).await.unwrap();
    let who = authenticated("d1").identity;

    // Two routes name one endpoint: one append.
    let sent = hub
        .send_telemetry(&who, json_message(r#"{"t": 35}"#, &[("level", "critical")]))
        .await
        .unwrap();
    assert_eq!(sent.len(), 1);
    let hot = read_endpoint(&hub, "HOT").await;
    assert_eq!(hot.len(), 1);
    assert_eq!(hot[0].event.body, br#"{"t": 35}"#);
    let props = &hot[0].event.application_properties;
    assert_eq!(props["site"].as_deref(), Some("plant-1"));
    assert_eq!(props["hub"].as_deref(), Some("myhub"));
    assert_eq!(props["missing"].as_deref(), Some("$twin.tags.nope"));
    assert_eq!(props["level"].as_deref(), Some("critical"));

    // The twin condition.
    hub.send_telemetry(&who, json_message(r#"{"t": 1}"#, &[("level", "info")]))
        .await
        .unwrap();
    assert_eq!(read_endpoint(&hub, "cold").await.len(), 1);

    // No route matches: the fallback takes it to the built-in endpoint, enriched for it.
    let fallback = hub
        .send_telemetry(&who, json_message(r#"{"t": 1}"#, &[("level", "debug")]))
        .await
        .unwrap();
    assert_eq!(fallback.len(), 1);
    let builtin = read_endpoint(&hub, "events").await;
    assert_eq!(builtin.len(), 1);
    assert_eq!(
        builtin[0].event.application_properties["hub"].as_deref(),
        Some("myhub")
    );

    // Fallback off: an unmatched message goes nowhere.
    let (mut current, etag) = hub.routing_config().await.unwrap();
    current.fallback_route = Some(ironhub_hub::routing::Route {
        is_enabled: false,
        ..current.fallback()
    });
    hub.set_routing_config(current, etag.as_deref())
        .await
        .unwrap();
    let dropped = hub
        .send_telemetry(&who, json_message(r#"{"t": 1}"#, &[("level", "debug")]))
        .await
        .unwrap();
    assert!(dropped.is_empty());
    assert_eq!(read_endpoint(&hub, "events").await.len(), 1);
}

#[tokio::test]
async fn without_routing_telemetry_goes_to_the_built_in_log_and_hub_events_nowhere() {
    let (hub, _dir) = routed_hub().await;
    hub.put_device("d1", &DeviceSpec::default(), None)
        .await
        .unwrap();
    hub.update_twin("d1", &json!({"tags": {"a": 1}}), None, false)
        .await
        .unwrap();
    let sent = hub
        .send_telemetry(&authenticated("d1").identity, json_message("{}", &[]))
        .await
        .unwrap();
    assert_eq!(sent.len(), 1);
    assert_eq!(
        read_endpoint(&hub, "events").await.len(),
        1,
        "only the telemetry"
    );
}

#[tokio::test]
async fn hub_events_are_routed_with_iot_hubs_shapes() {
    let (hub, _dir) = routed_hub().await;
    let doc = config(json!({
        "endpoints": {"eventHubs": [{"name": "ops"}]},
        "routes": [
            {"name": "twin", "source": "TwinChangeEvents", "condition": "true", "endpointNames": ["ops"], "isEnabled": true},
            {"name": "life", "source": "DeviceLifecycleEvents", "condition": "opType = 'createDeviceIdentity' OR opType = 'deleteDeviceIdentity'", "endpointNames": ["ops"], "isEnabled": true},
            {"name": "conn", "source": "DeviceConnectionStateEvents", "endpointNames": ["ops"], "isEnabled": true}
        ]
    }));
    hub.set_routing_config(doc, None).await.unwrap();
    hub.put_device("d1", &DeviceSpec::default(), None)
        .await
        .unwrap();
    hub.update_twin(
        "d1",
        &json!({"tags": {"site": "x"}, "properties": {"desired": {"rate": 5}}}),
        None,
        false,
    )
    .await
    .unwrap();
    hub.patch_reported("d1", br#"{"rate": 5}"#).await.unwrap();
    let session = hub.connect_device(authenticated("d1")).await;
    session.close().await;
    hub.delete_device("d1", None).await.unwrap();

    let events = read_in_order(&hub, "ops").await;
    let ops = op_types(&events);
    assert_eq!(
        ops,
        [
            "createDeviceIdentity",
            "updateTwin",
            "updateTwin",
            "deviceConnected",
            "deviceDisconnected",
            "deleteDeviceIdentity"
        ]
    );
    for e in &events {
        let app = &e.event.application_properties;
        let sys = &e.event.system_properties;
        assert_eq!(app["hubName"].as_deref(), Some("myhub"));
        assert_eq!(app["deviceId"].as_deref(), Some("d1"));
        assert!(app.contains_key("operationTimestamp"));
        assert_eq!(sys["iothub-connection-device-id"], "d1");
        assert_eq!(sys["content-type"], "application/json");
        assert_eq!(sys["content-encoding"], "utf-8");
    }
    let body =
        |i: usize| -> serde_json::Value { serde_json::from_slice(&events[i].event.body).unwrap() };
    assert_eq!(
        events[0].event.system_properties["iothub-message-source"],
        "deviceLifecycleEvents"
    );
    assert_eq!(body(0)["deviceId"], "d1");
    assert_eq!(
        events[1].event.application_properties["iothub-message-schema"].as_deref(),
        Some("twinChangeNotification")
    );
    assert_eq!(body(1)["tags"]["site"], "x");
    assert_eq!(body(1)["properties"]["desired"]["rate"], 5);
    assert_eq!(body(1)["properties"]["desired"]["$version"], 2);
    assert!(body(1)["properties"]["desired"]["$metadata"]["rate"]["$lastUpdated"].is_string());
    assert_eq!(body(2)["properties"]["reported"]["rate"], 5);
    assert_eq!(
        events[3].event.system_properties["iothub-message-source"],
        "deviceConnectionStateEvents"
    );
    let (a, b) = (body(3), body(4));
    let (a, b) = (
        a["sequenceNumber"].as_str().unwrap(),
        b["sequenceNumber"].as_str().unwrap(),
    );
    assert_eq!(a.len(), 64);
    assert!(a < b, "sequence numbers grow");
}

#[tokio::test]
async fn bad_documents_change_nothing() {
    let (hub, _dir) = routed_hub().await;
    let good = config(json!({
        "endpoints": {"eventHubs": [{"name": "hot"}]},
        "routes": [{"name": "r", "source": "DeviceMessages", "condition": "a = 'b'", "endpointNames": ["hot"], "isEnabled": true}]
    }));
    let (_, etag) = hub.set_routing_config(good.clone(), None).await.unwrap();
    for bad in [
        json!({"routes": [{"name": "r", "source": "DeviceMessages", "endpointNames": ["missing"], "isEnabled": true}]}),
        json!({"routes": [{"name": "r", "source": "DeviceMessages", "condition": "$body.x >", "endpointNames": ["events"], "isEnabled": true}]}),
    ] {
        let err = hub
            .set_routing_config(config(bad), Some(&etag))
            .await
            .unwrap_err();
        assert!(matches!(err, HubError::ArgumentInvalid(_)), "{err}");
        assert_eq!(err.code(), 400_004);
    }
    let err = hub
        .set_routing_config(good.clone(), Some("\"stale\""))
        .await
        .unwrap_err();
    assert_eq!(err.status(), 412);
    let (now, now_etag) = hub.routing_config().await.unwrap();
    assert_eq!(now, good);
    assert_eq!(now_etag.as_deref(), Some(etag.as_str()));
    assert_eq!(
        hub.for_endpoint(Some("nope")).await.unwrap_err().status(),
        404
    );
}

#[tokio::test]
async fn external_endpoints_get_a_delivery_stream_for_their_pump() {
    let (hub, _dir) = routed_hub().await;
    let doc = config(json!({
        "endpoints": {"webhooks": [{"name": "Hook", "url": "http://127.0.0.1:9/x"}]},
        "routes": [{"name": "r", "source": "DeviceMessages", "condition": "true", "endpointNames": ["hook"], "isEnabled": true}]
    }));
    hub.set_routing_config(doc, None).await.unwrap();
    let sent = hub
        .send_telemetry(&authenticated("d1").identity, json_message("{}", &[]))
        .await
        .unwrap();
    assert_eq!(sent.len(), 1);
    let streams = hub.event_streams().unwrap();
    let delivery = streams.stream("$delivery.hook").await.unwrap().unwrap();
    let p = ironhub_store::eventlog::partition_for("d1", delivery.partition_count());
    assert_eq!(delivery.read(p, 0, 10).await.unwrap().len(), 1);
    assert_eq!(
        read_endpoint(&hub, "events").await.len(),
        0,
        "routed, so no fallback"
    );
}

#[tokio::test]
async fn bulk_creates_and_deletes_emit_lifecycle_events() {
    let (hub, _dir) = routed_hub().await;
    let doc = config(json!({
        "endpoints": {"eventHubs": [{"name": "life"}]},
        "routes": [{"name": "life", "source": "DeviceLifecycleEvents", "endpointNames": ["life"], "isEnabled": true}]
    }));
    hub.set_routing_config(doc, None).await.unwrap();
    let item = |id: &str, mode: &str| -> ironhub_hub::model::ExportImportDevice {
        serde_json::from_value(json!({"id": id, "importMode": mode})).unwrap()
    };
    let done = hub
        .bulk(&[item("b1", "create"), item("b2", "create")])
        .await
        .unwrap();
    assert!(done.is_successful);
    assert!(
        hub.bulk(&[item("b1", "delete")])
            .await
            .unwrap()
            .is_successful
    );
    let mut ops: Vec<(String, String)> = read_endpoint(&hub, "life")
        .await
        .into_iter()
        .map(|e| {
            let app = e.event.application_properties;
            (
                app["deviceId"].clone().unwrap(),
                app["opType"].clone().unwrap(),
            )
        })
        .collect();
    ops.sort();
    assert_eq!(
        ops,
        [
            ("b1".into(), "createDeviceIdentity".into()),
            ("b1".into(), "deleteDeviceIdentity".into()),
            ("b2".into(), "createDeviceIdentity".into()),
        ]
    );
}

#[tokio::test]
async fn module_twins_and_identities_emit_events_with_the_module_id() {
    let (hub, _dir) = routed_hub().await;
    let doc = config(json!({
        "endpoints": {"eventHubs": [{"name": "ops"}]},
        "routes": [
            {"name": "twin", "source": "TwinChangeEvents", "condition": "$twin.moduleId = 'm1' AND $body.properties.desired.rate > 1", "endpointNames": ["ops"], "isEnabled": true},
            {"name": "reported", "source": "TwinChangeEvents", "condition": "IS_DEFINED($body.properties.reported)", "endpointNames": ["ops"], "isEnabled": true},
            {"name": "life", "source": "DeviceLifecycleEvents", "condition": "IS_DEFINED(moduleId)", "endpointNames": ["ops"], "isEnabled": true}
        ]
    }));
    hub.set_routing_config(doc, None).await.unwrap();
    hub.put_device("d1", &DeviceSpec::default(), None)
        .await
        .unwrap();
    let spec = ironhub_hub::model::ModuleSpec::default();
    hub.put_module("d1", "m1", &spec, None).await.unwrap();
    // Not selected by the condition: a rate of 1.
    hub.update_module_twin(
        "d1",
        "m1",
        &json!({"properties": {"desired": {"rate": 1}}}),
        None,
        false,
    )
    .await
    .unwrap();
    hub.update_module_twin(
        "d1",
        "m1",
        &json!({"tags": {"k": "v"}, "properties": {"desired": {"rate": 5}}}),
        None,
        true,
    )
    .await
    .unwrap();
    let mut module = authenticated("d1").identity;
    module.module_id = Some("m1".into());
    hub.identity_patch_reported(&module, br#"{"temp": 21}"#)
        .await
        .unwrap();
    // A device's own twin change is not a module's.
    hub.update_twin(
        "d1",
        &json!({"properties": {"desired": {"rate": 9}}}),
        None,
        false,
    )
    .await
    .unwrap();
    hub.delete_module("d1", "m1", None).await.unwrap();

    let events = read_in_order(&hub, "ops").await;
    let ops = op_types(&events);
    assert_eq!(
        ops,
        [
            "createDeviceIdentity",
            "replaceTwin",
            "updateTwin",
            "deleteDeviceIdentity"
        ]
    );
    for e in &events {
        let app = &e.event.application_properties;
        assert_eq!(app["deviceId"].as_deref(), Some("d1"));
        assert_eq!(app["moduleId"].as_deref(), Some("m1"));
        assert_eq!(app["hubName"].as_deref(), Some("myhub"));
        assert!(app.contains_key("operationTimestamp"));
        assert_eq!(
            e.event.system_properties["iothub-connection-module-id"],
            "m1"
        );
        assert_eq!(e.event.module_id.as_deref(), Some("m1"));
    }
    let body =
        |i: usize| -> serde_json::Value { serde_json::from_slice(&events[i].event.body).unwrap() };
    assert_eq!(body(0)["moduleId"], "m1");
    assert_eq!(body(1)["tags"]["k"], "v");
    assert_eq!(body(1)["properties"]["desired"]["rate"], 5);
    assert_eq!(body(2)["properties"]["reported"]["temp"], 21);
    assert_eq!(body(3)["moduleId"], "m1");
}

#[tokio::test]
async fn file_batches_are_iot_hubs_unless_the_server_allows_small_ones() {
    let (hub, dir) = routed_hub().await;
    let doc = config(json!({
        "endpoints": {"storageContainers": [{"name": "cold", "containerName": "cold", "batchFrequencyInSeconds": 1}]}
    }));
    let err = hub.set_routing_config(doc.clone(), None).await.unwrap_err();
    assert!(matches!(err, HubError::ArgumentInvalid(_)), "{err}");
    assert!(err.to_string().contains("60 to 720"), "{err}");
    assert!(
        hub.routing_config().await.unwrap().1.is_none(),
        "nothing stored"
    );
    let allowing = hub.with_routing_allowances(ironhub_hub::routing::Allowances {
        small_file_batches: true,
    });
    allowing.set_routing_config(doc, None).await.unwrap();
    drop(dir);
}

#[tokio::test]
async fn endpoint_health_lists_external_endpoints_as_their_pumps_recorded() {
    let (hub, _dir) = routed_hub().await;
    let doc = config(json!({
        "endpoints": {
            "eventHubs": [{"name": "ops"}],
            "webhooks": [{"name": "Hook", "url": "http://127.0.0.1:9/x"}],
            "natsSubjects": [{"name": "bus", "url": "nats://127.0.0.1:9", "subject": "t"}]
        }
    }));
    hub.set_routing_config(doc, None).await.unwrap();
    hub.store()
        .put_endpoint_health(ironhub_store::EndpointHealth {
            endpoint_id: "hook".into(),
            health_status: ironhub_store::EndpointHealthStatus::Dead,
            last_known_error: Some("connection refused".into()),
            ..Default::default()
        })
        .await
        .unwrap();
    let list = serde_json::to_value(hub.endpoint_health().await.unwrap()).unwrap();
    assert_eq!(
        list,
        json!({"value": [
            {"endpointId": "Hook", "healthStatus": "dead", "lastKnownError": "connection refused"},
            {"endpointId": "bus", "healthStatus": "unknown"}
        ]})
    );
}
