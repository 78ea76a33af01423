//! Twin queries through the domain API, on a real (temporary) store: answers, paging with
//! continuation tokens, `TOP`, groups, and errors.
#![allow(clippy::unwrap_used)]

use std::sync::Arc;

use ironhub_embedded::{LocalBus, SqliteEventLog, SqliteStore};
use ironhub_hub::model::DeviceSpec;
use ironhub_hub::{Backends, Hub, HubError};
use ironhub_query::ItemType;
use serde_json::{Value, json};

/// A hub with devices d00..d{n-1}; even ones report `powerState` '0', odd ones '1', and
/// every third the number 0.
async fn fleet(n: usize) -> (Hub, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let backends = Backends {
        store: Arc::new(SqliteStore::open(dir.path()).unwrap()),
        events: Arc::new(SqliteEventLog::open(dir.path(), 4).unwrap()),
        bus: Arc::new(LocalBus::new()),
    };
    let hub = Hub::open(backends, vec!["myhub.example".into()])
        .await
        .unwrap();
    for i in 0..n {
        let id = format!("d{i:02}");
        hub.put_device(&id, &DeviceSpec::default(), None)
            .await
            .unwrap();
        let state = if i % 3 == 0 {
            json!(0)
        } else {
            json!(if i % 2 == 0 { "0" } else { "1" })
        };
        let patch = json!({"powerState": state}).to_string();
        hub.patch_reported(&id, patch.as_bytes()).await.unwrap();
    }
    (hub, dir)
}

/// Every item of a query, page by page, and how many pages it took.
async fn all_pages(hub: &Hub, text: &str, size: usize) -> (Vec<Value>, usize) {
    let mut items = Vec::new();
    let mut token: Option<String> = None;
    let mut pages = 0;
    loop {
        let page = hub
            .query_twins(text, token.as_deref(), Some(size))
            .await
            .unwrap();
        pages += 1;
        items.extend(page.items);
        match page.continuation {
            Some(t) => token = Some(t),
            None => return (items, pages),
        }
        assert!(pages < 100, "paging does not end");
    }
}

fn ids(items: &[Value]) -> Vec<&str> {
    items
        .iter()
        .map(|i| i["deviceId"].as_str().unwrap())
        .collect()
}

#[tokio::test]
async fn the_devices_at_string_zero_and_nothing_else() {
    let (hub, _dir) = fleet(12).await;
    let text = "SELECT * FROM devices WHERE properties.reported.powerState = '0'";
    let page = hub.query_twins(text, None, None).await.unwrap();
    assert_eq!(page.item_type, ItemType::Twin);
    assert_eq!(ids(&page.items), ["d02", "d04", "d08", "d10"]);
    assert!(page.continuation.is_none());
    // The items are twins as IoT Hub answers them.
    let twin = &page.items[0];
    assert_eq!(twin["status"], "enabled");
    assert_eq!(twin["connectionState"], "Disconnected");
    assert_eq!(twin["properties"]["reported"]["$version"], 2);
    assert!(twin["properties"]["reported"]["$metadata"]["powerState"].is_object());
    let (items, pages) = all_pages(&hub, text, 3).await;
    assert_eq!(ids(&items), ["d02", "d04", "d08", "d10"]);
    assert_eq!(pages, 2);
}

#[tokio::test]
async fn pages_top_groups_and_projections() {
    let (hub, _dir) = fleet(12).await;
    let (items, pages) = all_pages(&hub, "SELECT * FROM devices", 5).await;
    assert_eq!(items.len(), 12);
    assert_eq!(pages, 3);
    let (items, _) = all_pages(&hub, "SELECT TOP 7 deviceId FROM devices", 5).await;
    assert_eq!(items.len(), 7);
    assert_eq!(items[6], json!({"deviceId": "d06"}));
    let page = hub
        .query_twins(
            "SELECT properties.reported.powerState AS s, COUNT() AS n FROM devices \
             GROUP BY properties.reported.powerState ORDER BY properties.reported.powerState",
            None,
            None,
        )
        .await
        .unwrap();
    assert_eq!(page.item_type, ItemType::Raw);
    assert_eq!(
        page.items,
        [
            json!({"s": 0, "n": 4}),
            json!({"s": "0", "n": 4}),
            json!({"s": "1", "n": 4})
        ]
    );
    let (items, pages) = all_pages(
        &hub,
        "SELECT deviceId FROM devices ORDER BY deviceId DESC",
        5,
    )
    .await;
    assert_eq!((items.len(), pages), (12, 3));
    assert_eq!(items[0], json!({"deviceId": "d11"}));
    let page = hub
        .query_twins("SELECT * FROM devices.modules", None, None)
        .await
        .unwrap();
    assert!(page.items.is_empty());
    let page = hub
        .query_twins("SELECT * FROM devices.jobs", None, None)
        .await
        .unwrap();
    assert_eq!((page.items.len(), page.item_type), (0, ItemType::DeviceJob));
}

#[tokio::test]
async fn bad_queries_and_tokens_are_client_errors() {
    let (hub, _dir) = fleet(1).await;
    let e = hub
        .query_twins("SELECT * FROM devices WHERE FOO(x)", None, None)
        .await
        .unwrap_err();
    assert_eq!((e.status(), e.name()), (400, "BadRequest"));
    assert!(e.to_string().contains("Line 1:28"), "{e}");
    let e = hub
        .query_twins("SELECT * FROM devices", Some("not a token"), None)
        .await
        .unwrap_err();
    assert!(matches!(e, HubError::ArgumentInvalid(_)));
}

/// `devices.modules` pages through every module twin of every device once, in (device id,
/// module id) order, whatever the page size, with each module's own twin and etags.
#[tokio::test]
async fn module_twins_page_in_id_order() {
    let (hub, _dir) = fleet(4).await;
    let mut expected = Vec::new();
    for (device, module) in [("d02", "b"), ("d00", "m"), ("d02", "a"), ("d03", "z")] {
        hub.put_module(device, module, &Default::default(), None)
            .await
            .unwrap();
        let doc = json!({"tags": {"module": module}});
        hub.update_module_twin(device, module, &doc, None, false)
            .await
            .unwrap();
        expected.push(format!("{device}/{module}"));
    }
    expected.sort();
    for size in 1..=5 {
        let (items, _) = all_pages(&hub, "SELECT * FROM devices.modules", size).await;
        let got: Vec<String> = items
            .iter()
            .map(|t| {
                assert_eq!(t["tags"]["module"], t["moduleId"]);
                assert!(t["etag"].is_string() && t["deviceEtag"].is_string(), "{t}");
                format!(
                    "{}/{}",
                    t["deviceId"].as_str().unwrap(),
                    t["moduleId"].as_str().unwrap()
                )
            })
            .collect();
        assert_eq!(got, expected, "pages of {size}");
    }
    let (items, _) = all_pages(
        &hub,
        "SELECT deviceId, moduleId FROM devices.modules WHERE tags.module >= 'm'",
        1,
    )
    .await;
    assert_eq!(
        items,
        [
            json!({"deviceId": "d00", "moduleId": "m"}),
            json!({"deviceId": "d03", "moduleId": "z"})
        ]
    );
}
