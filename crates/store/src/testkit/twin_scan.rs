//! Cases of the twin scan that twin queries read through.

use std::sync::Arc;

use serde_json::{Value, json};

use super::{DeviceState, create_device};
use crate::{ManualClock, ScanCondition, ScanOp, TwinField, TwinRecord, TwinScan};

async fn put_reported(store: &Arc<dyn DeviceState>, id: &str, reported: Value, tags: Value) {
    let twin = TwinRecord {
        device_id: id.into(),
        reported: reported.as_object().cloned().unwrap_or_default(),
        tags: tags.as_object().cloned().unwrap_or_default(),
        ..TwinRecord::default()
    };
    store.put_twin(twin, None).await.unwrap().unwrap();
}

fn ids(rows: &[crate::DeviceTwin]) -> Vec<String> {
    rows.iter().map(|(d, _)| d.device_id.clone()).collect()
}

/// Without conditions a scan pages through every device in id order, each with its twin
/// (`None` for one never written).
pub async fn scans_page_devices_in_id_order_with_their_twins(
    store: Arc<dyn DeviceState>,
    _clock: Arc<ManualClock>,
) {
    for id in ["c", "a", "b"] {
        create_device(&store, id).await;
    }
    put_reported(&store, "b", json!({"x": 1}), json!({})).await;
    let first = store
        .scan_twins(&TwinScan {
            limit: 2,
            ..TwinScan::default()
        })
        .await
        .unwrap();
    assert_eq!(ids(&first), ["a", "b"]);
    assert!(first[0].1.is_none());
    assert_eq!(first[1].1.as_ref().unwrap().reported["x"], 1);
    let rest = store
        .scan_twins(&TwinScan {
            after: Some("b".into()),
            limit: 2,
            ..TwinScan::default()
        })
        .await
        .unwrap();
    assert_eq!(ids(&rest), ["c"]);
}

/// Whatever an engine does with conditions, every device that satisfies them all comes
/// back, in id order, page after page; a string is not equal to a number.
pub async fn conditions_never_lose_a_matching_device(
    store: Arc<dyn DeviceState>,
    _clock: Arc<ManualClock>,
) {
    let fleet = [
        (
            "d1",
            json!({"powerState": "0", "t": 20}),
            json!({"site": "lab"}),
        ),
        (
            "d2",
            json!({"powerState": "1", "t": 25}),
            json!({"site": "lab"}),
        ),
        (
            "d3",
            json!({"powerState": 0, "t": 30}),
            json!({"site": "roof"}),
        ),
        ("d4", json!({"powerState": "0", "t": 35.5}), json!({})),
    ];
    for (id, reported, tags) in &fleet {
        create_device(&store, id).await;
        put_reported(&store, id, reported.clone(), tags.clone()).await;
    }
    create_device(&store, "d5").await;
    let reported = |k: &str| TwinField::Reported(vec![k.to_owned()]);
    let cases: Vec<(ScanCondition, Vec<&str>)> = vec![
        (
            ScanCondition {
                field: reported("powerState"),
                op: ScanOp::Eq,
                values: vec![json!("0")],
            },
            vec!["d1", "d4"],
        ),
        (
            ScanCondition {
                field: reported("powerState"),
                op: ScanOp::Eq,
                values: vec![json!(0)],
            },
            vec!["d3"],
        ),
        (
            ScanCondition {
                field: reported("t"),
                op: ScanOp::Gt,
                values: vec![json!(25)],
            },
            vec!["d3", "d4"],
        ),
        (
            ScanCondition {
                field: reported("t"),
                op: ScanOp::Le,
                values: vec![json!(25)],
            },
            vec!["d1", "d2"],
        ),
        (
            ScanCondition {
                field: TwinField::Tags(vec!["site".into()]),
                op: ScanOp::In,
                values: vec![json!("roof"), json!("sea")],
            },
            vec!["d3"],
        ),
        (
            ScanCondition {
                field: TwinField::DeviceId,
                op: ScanOp::In,
                values: vec![json!("d2"), json!("d5"), json!("zz")],
            },
            vec!["d2", "d5"],
        ),
    ];
    for (condition, expected) in cases {
        // One device a page, so that paging past what a condition skipped is exercised.
        let mut seen = Vec::new();
        let mut after = None;
        loop {
            let page = store
                .scan_twins(&TwinScan {
                    after: after.clone(),
                    limit: 1,
                    conditions: vec![condition.clone()],
                })
                .await
                .unwrap();
            let Some((device, _)) = page.first() else {
                break;
            };
            after = Some(device.device_id.clone());
            seen.push(device.device_id.clone());
        }
        let mut sorted = seen.clone();
        sorted.sort();
        assert_eq!(seen, sorted, "{condition:?}: in id order");
        for id in &expected {
            assert!(
                seen.iter().any(|s| s == id),
                "{condition:?} lost {id}: {seen:?}"
            );
        }
    }
}

/// The groups an engine computes for `request`, or `None` when it does not compute groups
/// (an engine may leave them to the caller: then there is nothing to check).
async fn groups(
    store: &Arc<dyn DeviceState>,
    request: crate::TwinAggregate,
) -> Option<Vec<(Vec<Option<Value>>, Vec<Option<Value>>, String)>> {
    let groups = store.aggregate_twins(&request).await.unwrap()?;
    Some(
        groups
            .into_iter()
            .map(|g| (g.keys, g.values, g.first))
            .collect(),
    )
}

/// An engine that computes `GROUP BY` keeps apart what the language keeps apart (`'0'` and
/// `0`, `1` and `1.0`, a missing property and the others), counts devices without a twin in
/// the groups of missing keys, applies conditions exactly, and orders groups by their first
/// device id.
pub async fn groups_keep_types_apart_and_count_every_device(
    store: Arc<dyn DeviceState>,
    _clock: Arc<ManualClock>,
) {
    use crate::{AggregateOp, TwinAggregate};
    let fleet = [
        ("d1", json!({"p": "0", "t": 20}), json!({"floor": 1})),
        ("d2", json!({"p": 0, "t": 25.5}), json!({"floor": 1.0})),
        ("d3", json!({"p": "0", "t": "hot"}), json!({"floor": 1})),
        (
            "d4",
            json!({"p": true, "t": 30}),
            json!({"floor": {"n": 2}}),
        ),
        ("d5", json!({"p": 1}), json!({})),
    ];
    for (id, reported, tags) in &fleet {
        create_device(&store, id).await;
        put_reported(&store, id, reported.clone(), tags.clone()).await;
    }
    create_device(&store, "d0").await;
    let p = || TwinField::Reported(vec!["p".into()]);
    let t = || TwinField::Reported(vec!["t".into()]);
    let counted = TwinAggregate {
        group_by: vec![p()],
        aggregates: vec![(AggregateOp::Count, None)],
        ..TwinAggregate::default()
    };
    let Some(answer) = groups(&store, counted).await else {
        return;
    };
    let n = |k: Option<Value>, c: u64, first: &str| (vec![k], vec![Some(json!(c))], first.into());
    assert_eq!(
        answer,
        vec![
            n(None, 1, "d0"),
            n(Some(json!("0")), 2, "d1"),
            n(Some(json!(0)), 1, "d2"),
            n(Some(json!(true)), 1, "d4"),
            n(Some(json!(1)), 1, "d5"),
        ]
    );
    let floors = TwinAggregate {
        group_by: vec![TwinField::Tags(vec!["floor".into()])],
        aggregates: vec![(AggregateOp::Count, None)],
        conditions: vec![ScanCondition {
            field: t(),
            op: ScanOp::Ge,
            values: vec![json!(20)],
        }],
    };
    // `'hot'` is not a number: d3 fails `t >= 20`; d0 has no `t`.
    assert_eq!(
        groups(&store, floors).await.unwrap(),
        vec![
            n(Some(json!(1)), 1, "d1"),
            n(Some(json!(1.0)), 1, "d2"),
            n(Some(json!({"n": 2})), 1, "d4"),
        ]
    );
    let sums = TwinAggregate {
        group_by: vec![],
        aggregates: vec![
            (AggregateOp::Sum, Some(t())),
            (AggregateOp::Min, Some(t())),
            (AggregateOp::Max, Some(t())),
            (AggregateOp::Avg, Some(p())),
            (AggregateOp::Count, None),
        ],
        conditions: vec![ScanCondition {
            field: TwinField::DeviceId,
            op: ScanOp::In,
            values: vec![json!("d0"), json!("d2"), json!("d3"), json!("d4")],
        }],
    };
    // MIN and MAX take strings too (numbers sort first); AVG of `p` sees one number, 0.
    assert_eq!(
        groups(&store, sums).await.unwrap(),
        vec![(
            vec![],
            vec![
                Some(json!(55.5)),
                Some(json!(25.5)),
                Some(json!("hot")),
                Some(json!(0)),
                Some(json!(4)),
            ],
            "d0".into()
        )]
    );
}

/// An engine that gives the first twins in the order of a property orders them as the
/// language does: missing (devices without a twin too), `null`, booleans, numbers (`1`
/// and `1.0` tie), strings; ties in ascending id order, also when descending.
pub async fn first_twins_come_in_the_language_order(
    store: Arc<dyn DeviceState>,
    _clock: Arc<ManualClock>,
) {
    use crate::TwinTop;
    let fleet = [
        ("d1", json!({"t": "b"})),
        ("d2", json!({"t": 1.0})),
        ("d3", json!({"t": 2})),
        ("d4", json!({"t": true})),
        ("d5", json!({})),
        ("d6", json!({"t": 1})),
        ("d7", json!({"t": "a"})),
        ("d8", json!({"t": false})),
        ("d9", json!({"t": -0.5})),
    ];
    for (id, reported) in &fleet {
        create_device(&store, id).await;
        put_reported(&store, id, reported.clone(), json!({})).await;
    }
    create_device(&store, "d0").await;
    let first = |descending: bool, limit: usize, conditions: Vec<ScanCondition>| {
        let store = store.clone();
        async move {
            let request = TwinTop {
                conditions,
                order_by: TwinField::Reported(vec!["t".into()]),
                descending,
                limit,
            };
            store
                .top_twins(&request)
                .await
                .unwrap()
                .map(|rows| ids(&rows))
        }
    };
    let Some(ascending) = first(false, 20, Vec::new()).await else {
        return;
    };
    assert_eq!(
        ascending,
        ["d0", "d5", "d8", "d4", "d9", "d2", "d6", "d3", "d7", "d1"]
    );
    assert_eq!(
        first(true, 6, Vec::new()).await.unwrap(),
        ["d1", "d7", "d3", "d2", "d6", "d9"]
    );
    assert_eq!(
        first(false, 3, Vec::new()).await.unwrap(),
        ["d0", "d5", "d8"]
    );
    let numbers = vec![ScanCondition {
        field: TwinField::Reported(vec!["t".into()]),
        op: ScanOp::Gt,
        values: vec![json!(0)],
    }];
    assert_eq!(first(true, 20, numbers).await.unwrap(), ["d3", "d2", "d6"]);
}

/// Equalities and `IN` on the registry's fields ([`crate::DeviceField`]) narrow exactly, page
/// after page: only the devices whose status, connection state, IoT Edge capability or
/// authentication type is one of the values come back, compared as the twin writes them (by
/// type and case: `'Disabled'` and `'connected'` match no device). An order is not narrowed,
/// but loses no device. An engine that computes groups counts them exactly too.
pub async fn registry_fields_narrow_exactly(store: Arc<dyn DeviceState>, _clock: Arc<ManualClock>) {
    use crate::{
        AggregateOp, AuthType, ConnectionState, DeviceField, DeviceStatus, DeviceWrite,
        RuntimeUpdate, TwinAggregate,
    };
    // (id, disabled, connected, IoT Edge, authentication)
    let fleet = [
        ("a1", false, false, false, AuthType::Sas),
        ("a2", true, false, true, AuthType::SelfSigned),
        ("a3", false, true, false, AuthType::CertificateAuthority),
        ("a4", true, true, true, AuthType::None),
        ("a5", false, false, false, AuthType::Sas),
    ];
    for (id, disabled, connected, edge, auth) in fleet {
        let mut device = super::device(id);
        if disabled {
            device.status = DeviceStatus::Disabled;
        }
        device.iot_edge = edge;
        device.authentication.kind = auth;
        store
            .write_devices(vec![DeviceWrite::Create(device)])
            .await
            .unwrap()
            .unwrap();
        if connected {
            let update = RuntimeUpdate {
                connection_state: Some(ConnectionState::Connected),
                node: Some(super::NODE.into()),
                at: Some(super::now()),
            };
            assert!(store.update_device_runtime(id, update).await.unwrap());
        }
    }
    put_reported(&store, "a2", json!({"t": 1}), json!({})).await;
    let on = |field: DeviceField, op: ScanOp, values: Vec<Value>| ScanCondition {
        field: TwinField::Device(field),
        op,
        values,
    };
    let status = |v: &str| on(DeviceField::Status, ScanOp::Eq, vec![json!(v)]);
    let connection = |v: &str| on(DeviceField::ConnectionState, ScanOp::Eq, vec![json!(v)]);
    let exact: Vec<(Vec<ScanCondition>, Vec<&str>)> = vec![
        (vec![status("disabled")], vec!["a2", "a4"]),
        (vec![status("enabled")], vec!["a1", "a3", "a5"]),
        (vec![status("Disabled")], vec![]),
        (vec![connection("Connected")], vec!["a3", "a4"]),
        (vec![connection("Disconnected")], vec!["a1", "a2", "a5"]),
        (vec![connection("connected")], vec![]),
        (
            vec![on(DeviceField::Status, ScanOp::Eq, vec![json!(0)])],
            vec![],
        ),
        (
            vec![status("disabled"), connection("Connected")],
            vec!["a4"],
        ),
        (
            vec![on(
                DeviceField::Status,
                ScanOp::In,
                vec![json!("disabled"), json!("x")],
            )],
            vec!["a2", "a4"],
        ),
        (
            vec![on(DeviceField::IotEdge, ScanOp::Eq, vec![json!(true)])],
            vec!["a2", "a4"],
        ),
        (
            vec![on(DeviceField::IotEdge, ScanOp::Eq, vec![json!("true")])],
            vec![],
        ),
        (
            vec![on(
                DeviceField::AuthenticationType,
                ScanOp::In,
                vec![json!("sas"), json!("none")],
            )],
            vec!["a1", "a4", "a5"],
        ),
        (
            vec![on(
                DeviceField::AuthenticationType,
                ScanOp::Eq,
                vec![json!("certificateAuthority")],
            )],
            vec!["a3"],
        ),
    ];
    for (conditions, expected) in exact {
        assert_eq!(paged(&store, &conditions).await, expected, "{conditions:?}");
    }
    let ordered = vec![on(DeviceField::Status, ScanOp::Gt, vec![json!("e")])];
    let seen = paged(&store, &ordered).await;
    assert!(
        ["a1", "a3", "a5"]
            .iter()
            .all(|id| seen.contains(&id.to_string())),
        "{seen:?}"
    );
    let counted = TwinAggregate {
        conditions: vec![status("disabled")],
        group_by: vec![],
        aggregates: vec![(AggregateOp::Count, None)],
    };
    if let Some(groups) = groups(&store, counted).await {
        assert_eq!(groups, [(vec![], vec![Some(json!(2))], "a2".to_owned())]);
    }
}

/// Every device a scan with `conditions` returns, a device a page.
async fn paged(store: &Arc<dyn DeviceState>, conditions: &[ScanCondition]) -> Vec<String> {
    let mut seen = Vec::new();
    loop {
        let page = store
            .scan_twins(&TwinScan {
                after: seen.last().cloned(),
                limit: 1,
                conditions: conditions.to_vec(),
            })
            .await
            .unwrap();
        let Some((device, _)) = page.first() else {
            return seen;
        };
        seen.push(device.device_id.clone());
    }
}
