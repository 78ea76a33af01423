//! Allocation to linked hubs and reprovisioning decisions.
#![allow(clippy::unwrap_used)]

mod common;

use std::collections::HashMap;
use std::time::Duration;

use common::linked_hub;
use ironhub_dps::allocation::{
    Allocation, HubAction, allocate, candidates, decide, effective_policy, hashed,
    is_legacy_api_version,
};
use ironhub_dps::model::{
    AllocationPolicy, AttestationMechanism, DeviceRegistrationState, EnrollmentSettings, LinkedHub,
    RegistrationStatus, ReprovisionPolicy, Substatus,
};

fn hub(name: &str, weight: Option<u32>, apply: Option<bool>) -> LinkedHub {
    LinkedHub {
        allocation_weight: weight,
        apply_allocation_policy: apply,
        ..linked_hub(name)
    }
}

fn settings() -> EnrollmentSettings {
    EnrollmentSettings::new(AttestationMechanism::symmetric_key(None, None))
}

fn none() -> HashMap<String, Duration> {
    HashMap::new()
}

fn picked(a: Allocation) -> String {
    match a {
        Allocation::Hub(h) => h,
        Allocation::Custom { .. } => panic!("not a hub"),
    }
}

#[test]
fn hashed_is_stable_and_honours_weights() {
    let hubs = [
        hub("a", None, None),
        hub("b", Some(1), None),
        hub("c", Some(2), None),
    ];
    let s = settings();
    let mut counts: HashMap<String, u32> = HashMap::new();
    for i in 0..4000 {
        let id = format!("device-{i}");
        let h = picked(allocate(&s, &id, &hubs, &none()).unwrap());
        // Same answer every time, whatever the order of the hubs or the id's case.
        let reversed: Vec<LinkedHub> = hubs.iter().rev().cloned().collect();
        assert_eq!(
            picked(allocate(&s, &id.to_uppercase(), &reversed, &none()).unwrap()),
            h
        );
        *counts.entry(h).or_default() += 1;
    }
    let share = |h: &str| f64::from(counts[h]) / 4000.0;
    assert!((share("a") - 0.25).abs() < 0.04, "{counts:?}");
    assert!((share("b") - 0.25).abs() < 0.04, "{counts:?}");
    assert!((share("c") - 0.50).abs() < 0.04, "{counts:?}");
}

#[test]
fn adding_a_hub_only_moves_devices_to_it() {
    let two = [hub("a", None, None), hub("b", None, None)];
    let three = [
        hub("a", None, None),
        hub("b", None, None),
        hub("c", None, None),
    ];
    let (c2, c3): (Vec<_>, Vec<_>) = (two.iter().collect(), three.iter().collect());
    let mut moved = 0;
    for i in 0..1000 {
        let id = format!("d{i}");
        let before = &hashed(&id, &c2).unwrap().name;
        let after = &hashed(&id, &c3).unwrap().name;
        if before != after {
            assert_eq!(after, "c");
            moved += 1;
        }
    }
    assert!((250..420).contains(&moved), "about a third moves: {moved}");
}

#[test]
fn candidates_follow_the_enrollment_and_the_hub_flags() {
    let hubs = [
        hub("a", None, None),
        hub("b", None, Some(false)),
        hub("c", Some(0), None),
    ];
    let names = |s: &EnrollmentSettings| -> Vec<String> {
        candidates(s, &hubs)
            .iter()
            .map(|h| h.name.clone())
            .collect()
    };
    assert_eq!(
        names(&settings()),
        ["a", "c"],
        "b is kept out of the service's choice"
    );
    let mut named = settings();
    named.iot_hubs = Some(vec!["B".into()]);
    assert_eq!(names(&named), ["b"], "an enrollment may name it");
    // Weight 0 is never picked by hashing.
    for i in 0..200 {
        assert_eq!(
            picked(allocate(&settings(), &format!("x{i}"), &hubs, &none()).unwrap()),
            "a"
        );
    }
    let mut only_zero = settings();
    only_zero.iot_hubs = Some(vec!["c".into()]);
    let e = allocate(&only_zero, "x", &hubs, &none()).unwrap_err();
    assert_eq!(e.status(), 400);
    assert!(
        allocate(&settings(), "x", &[], &none()).is_err(),
        "no linked hub"
    );
}

#[test]
fn static_custom_and_lowest_latency() {
    let hubs = [hub("a", None, None), hub("b", None, None)];
    let mut s = settings();
    s.allocation_policy = Some(AllocationPolicy::Static);
    s.iot_hub_host_name = Some("B".into());
    assert_eq!(picked(allocate(&s, "x", &hubs, &none()).unwrap()), "b");
    s.iot_hub_host_name = Some("gone".into());
    assert_eq!(allocate(&s, "x", &hubs, &none()).unwrap_err().status(), 404);
    s.iot_hub_host_name = None;
    s.iot_hubs = Some(vec!["a".into()]);
    assert_eq!(picked(allocate(&s, "x", &hubs, &none()).unwrap()), "a");
    // No hub named: the only linked hub, else no single hub to assign.
    s.iot_hubs = None;
    assert_eq!(picked(allocate(&s, "x", &hubs[..1], &none()).unwrap()), "a");
    assert_eq!(allocate(&s, "x", &hubs, &none()).unwrap_err().status(), 400);

    let mut c = settings();
    c.allocation_policy = Some(AllocationPolicy::Custom);
    c.custom_allocation_definition = Some(ironhub_dps::model::CustomAllocationDefinition {
        webhook_url: "https://fn.example/api/x".into(),
        api_version: "2019-03-31".into(),
    });
    match allocate(&c, "x", &hubs, &none()).unwrap() {
        Allocation::Custom {
            linked_hubs,
            definition,
        } => {
            assert_eq!(linked_hubs, ["a", "b"]);
            assert_eq!(definition.api_version, "2019-03-31");
        }
        other => panic!("{other:?}"),
    }

    let mut g = settings();
    g.allocation_policy = Some(AllocationPolicy::GeoLatency);
    let rtt: HashMap<String, Duration> = [
        ("a".to_owned(), Duration::from_millis(30)),
        ("b".to_owned(), Duration::from_millis(5)),
    ]
    .into();
    for i in 0..50 {
        assert_eq!(
            picked(allocate(&g, &format!("x{i}"), &hubs, &rtt).unwrap()),
            "b"
        );
    }
    // Unmeasured: evenly weighted distribution.
    let hashed_pick = picked(allocate(&settings(), "x7", &hubs, &none()).unwrap());
    assert_eq!(
        picked(allocate(&g, "x7", &hubs, &none()).unwrap()),
        hashed_pick
    );
}

fn previous(hub: &str) -> DeviceRegistrationState {
    DeviceRegistrationState {
        registration_id: "r".into(),
        created_date_time_utc: None,
        assigned_hub: Some(hub.into()),
        device_id: Some("r".into()),
        status: RegistrationStatus::Assigned,
        substatus: Some(Substatus::InitialAssignment),
        error_code: None,
        error_message: None,
        last_updated_date_time_utc: None,
        etag: None,
        payload: None,
        tpm: None,
        issued_certificate_chain: None,
    }
}

#[test]
fn reprovisioning_follows_the_policy() {
    let linked = |h: &str| h != "gone";
    let migrate = ReprovisionPolicy::default();
    let reset = ReprovisionPolicy {
        update_hub_assignment: true,
        migrate_device_data: false,
    };
    let never = ReprovisionPolicy {
        update_hub_assignment: false,
        migrate_device_data: true,
    };

    // First registration, or one after a failure.
    let first = decide(migrate, None, "a", linked);
    assert_eq!(
        (first.hub.as_str(), &first.action),
        ("a", &HubAction::Assign)
    );
    assert_eq!(first.substatus, Substatus::InitialAssignment);
    let mut failed = previous("b");
    failed.status = RegistrationStatus::Failed;
    assert_eq!(
        decide(never, Some(&failed), "a", linked).action,
        HubAction::Assign
    );

    // Re-provision and migrate data.
    let same = decide(migrate, Some(&previous("A")), "a", linked);
    assert_eq!(
        (same.action, same.substatus),
        (HubAction::Keep, Substatus::InitialAssignment)
    );
    let moved = decide(migrate, Some(&previous("b")), "a", linked);
    assert_eq!(moved.hub, "a");
    assert_eq!(moved.action, HubAction::Migrate { from: "b".into() });
    assert_eq!(moved.substatus, Substatus::DeviceDataMigrated);

    // Re-provision and reset to the initial config, even on the same hub (Azure docs, IoT Hub
    // Device reprovisioning concepts, 'Reprovisioning policies').
    let r = decide(reset, Some(&previous("b")), "a", linked);
    assert_eq!(
        r.action,
        HubAction::Reset {
            from: Some("b".into())
        }
    );
    assert_eq!(r.substatus, Substatus::DeviceDataReset);
    let r = decide(reset, Some(&previous("a")), "a", linked);
    assert_eq!(r.action, HubAction::Reset { from: None });

    // Never re-provision: stays where it was.
    let n = decide(never, Some(&previous("b")), "a", linked);
    assert_eq!((n.hub.as_str(), &n.action), ("b", &HubAction::Keep));
    assert_eq!(n.substatus, Substatus::ReprovisionedToInitialAssignment);

    // A previous hub that is no longer linked cannot be kept.
    let g = decide(never, Some(&previous("gone")), "a", linked);
    assert_eq!((g.hub.as_str(), g.action), ("a", HubAction::Assign));
}

#[test]
fn legacy_devices_without_a_policy_stay_on_their_hub() {
    assert!(is_legacy_api_version("2018-04-01"));
    assert!(is_legacy_api_version("2017-11-15"));
    assert!(!is_legacy_api_version("2019-03-31"));
    assert!(!is_legacy_api_version("2021-06-01"));
    assert!(!is_legacy_api_version("junk"));
    assert_eq!(effective_policy(None, false), ReprovisionPolicy::default());
    assert!(!effective_policy(None, true).update_hub_assignment);
    // A saved policy always wins (Azure docs, IoT Hub Device reprovisioning concepts,
    // 'Managing backwards compatibility').
    let saved = ReprovisionPolicy {
        update_hub_assignment: true,
        migrate_device_data: false,
    };
    assert_eq!(effective_policy(Some(saved), true), saved);
    let legacy = decide(
        effective_policy(None, true),
        Some(&previous("b")),
        "a",
        |_| true,
    );
    assert_eq!(legacy.hub, "b");
}
