//! Key regeneration, parent and child devices, and twin etags and clearing, through the
//! domain API on a real (temporary) store.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use ironhub_hub::Hub;
use ironhub_hub::keys::RegenerateRequest;
use ironhub_hub::model::DeviceSpec;
use ironhub_store::{BusMessage, DeviceBus};
use serde_json::{Value, json};

fn spec(v: Value) -> DeviceSpec {
    serde_json::from_value(v).unwrap()
}

fn regen(v: Value) -> RegenerateRequest {
    serde_json::from_value(v).unwrap()
}

async fn create(hub: &Hub, id: &str, body: Value) -> ironhub_store::DeviceRecord {
    hub.put_device(id, &spec(body), None).await.unwrap()
}

#[tokio::test]
async fn keys_are_regenerated_per_policy_key_and_failures_reported() {
    let (hub, bus, _dir) = common::temp_hub_with_bus().await;
    let a = create(&hub, "a", json!({})).await;
    let b = create(&hub, "b", json!({})).await;
    create(
        &hub,
        "x",
        json!({"authentication": {"type": "selfSigned",
            "x509Thumbprint": {"primaryThumbprint": "AB".repeat(20)}}}),
    )
    .await;
    let mut conn = bus.attach("a").await;

    let result = hub
        .regenerate_keys(&regen(json!({"policyKey": "primaryKey",
            "devices": [{"id": "a"}, {"id": "b"}, {"id": "x"}, {"id": "nope"}]})))
        .await
        .unwrap();
    assert_eq!(result.policy_key, "primaryKey");
    assert_eq!(result.rotated_keys.len(), 2);
    let codes: Vec<(&str, &str)> = result
        .errors
        .iter()
        .map(|e| (e.id.as_str(), e.error_code.as_str()))
        .collect();
    assert_eq!(
        codes,
        [("x", "ArgumentInvalid"), ("nope", "DeviceNotFound")]
    );
    let after = hub.get_device("a").await.unwrap();
    let (old, new) = (
        &a.authentication.symmetric_key,
        &after.authentication.symmetric_key,
    );
    assert_ne!(old.primary_key, new.primary_key, "the primary key is new");
    assert_eq!(
        old.secondary_key, new.secondary_key,
        "the secondary key is kept"
    );
    assert_eq!(
        Some(&result.rotated_keys[0].primary_key),
        new.primary_key.as_ref(),
        "the answer carries the stored key"
    );
    assert_ne!(after.etag, a.etag);
    let revoked = tokio::time::timeout(Duration::from_secs(5), conn.messages.recv())
        .await
        .unwrap();
    assert_eq!(
        revoked,
        Some(BusMessage::Revoked),
        "a re-keyed device is disconnected"
    );

    let both = hub
        .regenerate_keys(&regen(
            json!({"policyKey": "both", "devices": [{"id": "b"}]}),
        ))
        .await
        .unwrap();
    let b2 = hub
        .get_device("b")
        .await
        .unwrap()
        .authentication
        .symmetric_key;
    assert_ne!(b2.primary_key, b.authentication.symmetric_key.primary_key);
    assert_ne!(
        b2.secondary_key,
        b.authentication.symmetric_key.secondary_key
    );
    assert!(both.errors.is_empty());

    for bad in [
        json!({"policyKey": "swap", "devices": [{"id": "a"}]}),
        json!({"policyKey": "primaryKey", "devices": []}),
        json!({"policyKey": "primaryKey"}),
    ] {
        let before = hub.get_device("a").await.unwrap();
        let e = hub.regenerate_keys(&regen(bad.clone())).await.unwrap_err();
        assert_eq!(e.status(), 400, "{bad}");
        assert_eq!(
            hub.get_device("a").await.unwrap().etag,
            before.etag,
            "{bad}"
        );
    }
    let many: Vec<Value> = (0..101).map(|i| json!({"id": format!("d{i}")})).collect();
    let e = hub
        .regenerate_keys(&regen(json!({"policyKey": "both", "devices": many})))
        .await
        .unwrap_err();
    assert_eq!(e.code(), 400_004);
}

#[tokio::test]
async fn leaf_devices_name_their_parent_by_device_scope() {
    let (hub, _bus, _dir) = common::temp_hub_with_bus().await;
    let edge = create(&hub, "gw", json!({"capabilities": {"iotEdge": true}})).await;
    let scope = edge.device_scope.clone().unwrap();
    let leaf = create(&hub, "leaf", json!({"deviceScope": scope})).await;
    assert_eq!(leaf.device_scope.as_deref(), Some(scope.as_str()));
    assert_eq!(
        leaf.parent_scopes,
        [scope.as_str()],
        "parentScopes is derived"
    );
    let twin = serde_json::to_value(hub.get_twin("leaf").await.unwrap()).unwrap();
    assert_eq!(
        twin["deviceScope"],
        scope.as_str(),
        "the twin shows the scopes"
    );
    assert_eq!(twin["parentScopes"], json!([scope]));

    // A scope that names no Edge device is refused, on create and on update.
    let random = "6f1ed5d7-4e4c-4c36-9a0c-5b0f3d0d2a11";
    let e = hub
        .put_device("stray", &spec(json!({"deviceScope": random})), None)
        .await
        .unwrap_err();
    assert_eq!(e.code(), 400_004);
    assert_eq!(hub.get_device("stray").await.unwrap_err().code(), 404_001);
    let e = hub
        .put_device("leaf", &spec(json!({"deviceScope": random})), Some("*"))
        .await
        .unwrap_err();
    assert_eq!(e.code(), 400_004);
    create(&hub, "plain", json!({})).await;
    let plain_scope = "ms-azure-iot-edge://plain-123";
    let e = hub
        .put_device("leaf2", &spec(json!({"deviceScope": plain_scope})), None)
        .await
        .unwrap_err();
    assert_eq!(
        e.code(),
        400_004,
        "a device that is not an Edge device has no children"
    );

    // parentScopes alone names the parent; with deviceScope, deviceScope decides (the Azure
    // CLI sends the device it read, old parentScopes included, with a new deviceScope).
    let other = create(&hub, "gw2", json!({"capabilities": {"iotEdge": true}})).await;
    let other_scope = other.device_scope.clone().unwrap();
    let moved = hub
        .put_device(
            "leaf",
            &spec(json!({"parentScopes": [other_scope]})),
            Some("*"),
        )
        .await
        .unwrap();
    assert_eq!(moved.device_scope.as_deref(), Some(other_scope.as_str()));
    let back = hub
        .put_device(
            "leaf",
            &spec(json!({"deviceScope": scope, "parentScopes": [other_scope]})),
            Some("*"),
        )
        .await
        .unwrap();
    assert_eq!(back.parent_scopes, [scope.as_str()]);
    let e = hub
        .put_device(
            "leaf",
            &spec(json!({"parentScopes": [scope, other_scope]})),
            Some("*"),
        )
        .await
        .unwrap_err();
    assert_eq!(e.code(), 400_004, "one parent at most");

    // Removing the parent: an empty scope, whatever parentScopes still says.
    let removed = hub
        .put_device(
            "leaf",
            &spec(json!({"deviceScope": "", "parentScopes": [scope]})),
            Some("*"),
        )
        .await
        .unwrap();
    assert_eq!(removed.device_scope, None);
    assert!(removed.parent_scopes.is_empty());

    // An Edge device that stops being one cannot keep its own scope as its parent.
    let e = hub
        .put_device("gw2", &spec(json!({"deviceScope": other_scope})), Some("*"))
        .await
        .unwrap_err();
    assert_eq!(e.code(), 400_004);

    // An Edge device's own scope does not change, whatever an update says.
    let again = hub
        .put_device(
            "gw",
            &spec(json!({"capabilities": {"iotEdge": true}, "deviceScope": other_scope})),
            Some("*"),
        )
        .await
        .unwrap();
    assert_eq!(again.device_scope.as_deref(), Some(scope.as_str()));
}

#[tokio::test]
async fn edge_devices_nest_at_most_five_layers_and_never_in_a_cycle() {
    let (hub, _bus, _dir) = common::temp_hub_with_bus().await;
    let mut scopes = vec![];
    let root = create(&hub, "e0", json!({"capabilities": {"iotEdge": true}})).await;
    scopes.push(root.device_scope.clone().unwrap());
    for i in 1..=5 {
        let e = create(
            &hub,
            &format!("e{i}"),
            json!({"capabilities": {"iotEdge": true}, "parentScopes": [scopes[i - 1]]}),
        )
        .await;
        assert_eq!(e.parent_scopes, [scopes[i - 1].clone()]);
        scopes.push(e.device_scope.clone().unwrap());
    }
    let e = hub
        .put_device(
            "e6",
            &spec(json!({"capabilities": {"iotEdge": true}, "parentScopes": [scopes[5]]})),
            None,
        )
        .await
        .unwrap_err();
    assert_eq!(e.code(), 400_004, "a sixth layer is refused");
    // A leaf below the fifth layer is not a layer of Edge devices.
    create(&hub, "leaf", json!({"deviceScope": scopes[5]})).await;

    // A subtree moves with its root: e3 (layer 3, with e4 and e5 below it) cannot go under
    // `side` (layer 3), where e5 would be a sixth layer; one layer up is fine.
    let e = hub
        .put_device(
            "e3",
            &spec(json!({"capabilities": {"iotEdge": true}, "parentScopes": [scopes[3]]})),
            Some("*"),
        )
        .await
        .unwrap_err();
    assert_eq!(e.code(), 400_004, "a cycle");
    let side = create(
        &hub,
        "side",
        json!({"capabilities": {"iotEdge": true}, "parentScopes": [scopes[2]]}),
    )
    .await;
    let e = hub
        .put_device(
            "e3",
            &spec(json!({"capabilities": {"iotEdge": true},
                         "parentScopes": [side.device_scope.clone().unwrap()]})),
            Some("*"),
        )
        .await
        .unwrap_err();
    assert_eq!(e.code(), 400_004, "e5 would be six layers down");
    let moved = hub
        .put_device(
            "e3",
            &spec(json!({"capabilities": {"iotEdge": true}, "parentScopes": [scopes[1]]})),
            Some("*"),
        )
        .await
        .unwrap();
    assert_eq!(
        moved.parent_scopes,
        [scopes[1].as_str()],
        "one layer up is fine"
    );

    let cycle = hub
        .put_device(
            "e0",
            &spec(json!({"capabilities": {"iotEdge": true}, "parentScopes": [scopes[2]]})),
            Some("*"),
        )
        .await
        .unwrap_err();
    assert_eq!(
        cycle.code(),
        400_004,
        "an Edge device cannot descend from itself"
    );
    let two = hub
        .put_device(
            "e9",
            &spec(
                json!({"capabilities": {"iotEdge": true}, "parentScopes": [scopes[0], scopes[1]]}),
            ),
            None,
        )
        .await
        .unwrap_err();
    assert_eq!(two.code(), 400_004, "one parent at most");
}

#[tokio::test]
async fn a_new_twin_has_an_etag_that_if_match_accepts() {
    let (hub, _bus, _dir) = common::temp_hub_with_bus().await;
    create(&hub, "d", json!({})).await;
    let twin = hub.get_twin("d").await.unwrap();
    let etag = twin.etag.clone();
    assert!(!etag.is_empty());
    assert_eq!(hub.get_twin("d").await.unwrap().etag, etag, "stable");
    let stale = hub
        .update_twin("d", &json!({"tags": {"a": 1}}), Some("\"bogus\""), false)
        .await
        .unwrap_err();
    assert_eq!(stale.code(), 412_002);
    let updated = hub
        .update_twin(
            "d",
            &json!({"tags": {"a": 1}}),
            Some(&format!("\"{etag}\"")),
            false,
        )
        .await
        .unwrap();
    assert_ne!(updated.etag, etag);
    let again = hub
        .update_twin("d", &json!({"tags": {"a": 2}}), Some(&etag), false)
        .await
        .unwrap_err();
    assert_eq!(again.code(), 412_002, "the old etag no longer matches");
}

#[tokio::test]
async fn null_desired_and_tags_clear_them_and_the_device_is_told() {
    let (hub, bus, _dir) = common::temp_hub_with_bus().await;
    create(&hub, "d", json!({})).await;
    hub.update_twin(
        "d",
        &json!({"tags": {"t": 1, "u": {"v": 2}},
                "properties": {"desired": {"a": 1, "b": {"c": 2}}}}),
        None,
        false,
    )
    .await
    .unwrap();
    let mut conn = bus.attach("d").await;
    let cleared = hub
        .update_twin(
            "d",
            &json!({"properties": {"desired": null}}),
            Some("*"),
            false,
        )
        .await
        .map(|t| serde_json::to_value(t).unwrap())
        .unwrap();
    assert_eq!(cleared["properties"]["desired"]["$version"], 3);
    let desired = cleared["properties"]["desired"].as_object().unwrap();
    assert!(
        desired.keys().all(|k| k.starts_with('$')),
        "no desired property is left: {desired:?}"
    );
    assert_eq!(
        cleared["tags"],
        json!({"t": 1, "u": {"v": 2}}),
        "tags untouched"
    );
    let pushed = tokio::time::timeout(Duration::from_secs(5), conn.messages.recv())
        .await
        .unwrap()
        .unwrap();
    let BusMessage::DesiredPatch { version, body } = pushed else {
        panic!("expected a desired patch, got {pushed:?}");
    };
    assert_eq!(version, 3);
    let body: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(body, json!({"a": null, "b": null, "$version": 3}));

    let cleared = hub
        .update_twin("d", &json!({"tags": null}), None, false)
        .await
        .map(|t| serde_json::to_value(t).unwrap())
        .unwrap();
    assert_eq!(cleared["tags"], json!({}));
    assert_eq!(cleared["properties"]["desired"]["$version"], 3);
}
