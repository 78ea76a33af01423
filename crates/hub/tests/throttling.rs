//! Throttling in the hub: the operations a client asks for count against their rates, the
//! hub's own reads behind them do not.

use std::sync::Arc;

mod common;

use ironhub_embedded::{LocalBus, SqliteEventLog, SqliteStore};
use ironhub_hub::model::DeviceSpec;
use ironhub_hub::throttle::{Rate, Rates, Throttle, ThrottleSettings};
use ironhub_hub::{Backends, Hub, HubError};
use ironhub_store::ManualClock;

fn one_a_second() -> Option<Rate> {
    Some(Rate {
        rate: 1.0,
        burst: Some(1),
    })
}

#[tokio::test]
async fn client_operations_are_throttled_and_the_hubs_own_reads_are_not() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(SqliteStore::open(dir.path()).unwrap());
    let backends = Backends {
        store: store.clone(),
        events: Arc::new(SqliteEventLog::open(dir.path(), 4).unwrap()),
        bus: Arc::new(LocalBus::new()),
    };
    let settings = ThrottleSettings {
        registry: Rates {
            hub: one_a_second(),
            device: None,
        },
        service_twin: Rates {
            hub: None,
            device: one_a_second(),
        },
        d2c: Rates {
            hub: None,
            device: one_a_second(),
        },
        ..ThrottleSettings::default()
    };
    let clock = Arc::new(ManualClock::default());
    let throttle = Arc::new(Throttle::new(settings, store).with_clock(clock.clone()));
    let hub = Hub::open(backends, vec!["myhub.example".into()])
        .await
        .unwrap()
        .with_throttle(throttle);

    hub.put_device("d1", &DeviceSpec::default(), None)
        .await
        .unwrap();
    let refused = hub.get_device("d1").await.unwrap_err();
    assert!(matches!(refused, HubError::Throttled { .. }), "{refused:?}");
    assert_eq!(refused.retry_after(), Some(1));
    // Nothing was written by a refused create.
    assert!(matches!(
        hub.put_device("d2", &DeviceSpec::default(), None).await,
        Err(HubError::Throttled { .. })
    ));
    // The twin has its own rate, per device; a C2D send reads the device without counting.
    hub.get_twin("d1").await.unwrap();
    assert!(hub.get_twin("d1").await.is_err());
    hub.send_c2d("d1", Default::default()).await.unwrap();
    // Telemetry over its rate is refused and counted as Azure's `sendThrottle`.
    let who = common::authenticated("d1").identity;
    let throttled = &ironhub_observe::metrics()
        .hub
        .telemetry_ingress_send_throttle;
    let before = throttled.get();
    hub.send_telemetry(&who, Default::default()).await.unwrap();
    assert!(matches!(
        hub.send_telemetry(&who, Default::default()).await,
        Err(HubError::Throttled { .. })
    ));
    assert!(throttled.get() > before);
    clock.advance(chrono::TimeDelta::seconds(1));
    assert!(
        matches!(hub.get_device("d2").await, Err(HubError::DeviceNotFound(_))),
        "the next second admits again, and the refused create wrote nothing"
    );
}

/// A run of telemetry (MQTT PUBLISHes read together) is judged message by message: the
/// first throttled one stops it, so only those before it are appended, in order.
#[tokio::test]
async fn a_throttled_message_ends_a_telemetry_run_after_what_came_before() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(SqliteStore::open(dir.path()).unwrap());
    let backends = Backends {
        store: store.clone(),
        events: Arc::new(SqliteEventLog::open(dir.path(), 1).unwrap()),
        bus: Arc::new(LocalBus::new()),
    };
    let settings = ThrottleSettings {
        d2c: Rates {
            hub: None,
            device: Some(Rate {
                rate: 1.0,
                burst: Some(2),
            }),
        },
        ..ThrottleSettings::default()
    };
    let clock = Arc::new(ManualClock::default());
    let throttle = Arc::new(Throttle::new(settings, store).with_clock(clock));
    let hub = Hub::open(backends, vec!["myhub.example".into()])
        .await
        .unwrap()
        .with_throttle(throttle);
    hub.put_device("d1", &DeviceSpec::default(), None)
        .await
        .unwrap();
    let who = common::authenticated("d1").identity;
    let messages = (0..4u8)
        .map(|i| ironhub_hub::Telemetry {
            body: vec![i],
            ..Default::default()
        })
        .collect();
    let run = hub.send_telemetry_run(&who, messages).await;
    assert_eq!(run.durable, 2);
    assert!(
        matches!(run.refused, Some(HubError::Throttled { .. })),
        "{:?}",
        run.refused
    );
    let stored = hub.events().read(0, 0, 10).await.unwrap();
    let bodies: Vec<Vec<u8>> = stored.into_iter().map(|e| e.event.body).collect();
    assert_eq!(bodies, [vec![0], vec![1]]);
}
