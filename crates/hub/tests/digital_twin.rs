//! IoT Plug and Play through the domain API, on a real (temporary) store: the announced model
//! on the twin, and digital-twin updates as twin updates.
#![allow(clippy::unwrap_used)]

mod common;

use ironhub_hub::model::DeviceSpec;
use ironhub_hub::{Hub, HubError};
use serde_json::json;

const MODEL: &str = "dtmi:com:example:Thermostat;1";

async fn hub_with_device() -> (Hub, tempfile::TempDir) {
    let (hub, dir) = common::temp_hub().await;
    hub.put_device("d1", &DeviceSpec::default(), None)
        .await
        .unwrap();
    (hub, dir)
}

/// The twin as `GET /twins/{id}` writes it.
async fn twin_json(hub: &Hub, id: &str) -> serde_json::Value {
    serde_json::to_value(hub.get_twin(id).await.unwrap()).unwrap()
}

#[tokio::test]
async fn the_announced_model_is_kept_on_the_twin() {
    let (hub, _dir) = hub_with_device().await;
    assert_eq!(twin_json(&hub, "d1").await["modelId"], "");
    hub.announce_model("d1", MODEL).await.unwrap();
    let twin = twin_json(&hub, "d1").await;
    assert_eq!(twin["modelId"], MODEL);
    // The same model again writes nothing (no new etag); another replaces it.
    hub.announce_model("d1", MODEL).await.unwrap();
    assert_eq!(twin_json(&hub, "d1").await["etag"], twin["etag"]);
    hub.announce_model("d1", "dtmi:com:example:Thermostat;2")
        .await
        .unwrap();
    assert_eq!(
        twin_json(&hub, "d1").await["modelId"],
        "dtmi:com:example:Thermostat;2"
    );
    let (dt, _) = hub.get_digital_twin("d1").await.unwrap();
    assert_eq!(dt["$metadata"]["$model"], "dtmi:com:example:Thermostat;2");
    // Not a DTMI, or no such device: refused, nothing changed.
    assert!(matches!(
        hub.announce_model("d1", "thermostat").await,
        Err(HubError::ArgumentInvalid(_))
    ));
    assert!(matches!(
        hub.announce_model("nobody", MODEL).await,
        Err(HubError::DeviceNotFound(_))
    ));
}

#[tokio::test]
async fn digital_twin_updates_are_twin_updates() {
    let (hub, _dir) = hub_with_device().await;
    let (_, etag) = hub.get_digital_twin("d1").await.unwrap();
    let patch = json!([{"op": "add", "path": "/targetTemperature", "value": 21}]);
    let new_etag = hub
        .update_digital_twin("d1", &patch, Some(&etag))
        .await
        .unwrap();
    assert_ne!(new_etag, etag);
    let twin = twin_json(&hub, "d1").await;
    assert_eq!(twin["etag"], new_etag.as_str());
    assert_eq!(twin["properties"]["desired"]["targetTemperature"], 21);
    // The old etag is stale now; an invalid patch changes nothing either.
    assert!(matches!(
        hub.update_digital_twin("d1", &patch, Some(&etag)).await,
        Err(HubError::PreconditionFailed(_))
    ));
    let bad = json!([{"op": "add", "path": "/x", "value": [1]}]);
    assert!(hub.update_digital_twin("d1", &bad, None).await.is_err());
    assert_eq!(twin_json(&hub, "d1").await["etag"], new_etag.as_str());
    // A command to a device that is not connected.
    assert!(matches!(
        hub.invoke_command("d1", Some("c"), "run", json!({}), None, Some(5))
            .await,
        Err(HubError::DeviceNotOnline(_))
    ));
}
