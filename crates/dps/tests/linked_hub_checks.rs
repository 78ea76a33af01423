//! Linking a hub calls it first: a hub whose certificate is not trusted, or that rejects the
//! connection string's key, is refused with the fix and nothing is stored; a hub that does not
//! answer now is linked (it may come up later).
#![allow(clippy::unwrap_used)]

mod common;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use common::linked_hub;
use ironhub_dps::{HubCallError, HubRegistry, Services, StaticConnector};
use ironhub_wire::hub::{Device, DeviceSpec, Twin, TwinPatch};

/// A hub whose every call fails the same way.
#[derive(Debug)]
struct Failing(fn() -> HubCallError);

#[async_trait]
impl HubRegistry for Failing {
    async fn get_device(&self, _: &str) -> Result<Option<Device>, HubCallError> {
        Err((self.0)())
    }
    async fn put_device(
        &self,
        _: &str,
        _: &DeviceSpec,
        _: Option<&str>,
    ) -> Result<Device, HubCallError> {
        Err((self.0)())
    }
    async fn delete_device(&self, _: &str) -> Result<(), HubCallError> {
        Err((self.0)())
    }
    async fn get_twin(&self, _: &str) -> Result<Twin, HubCallError> {
        Err((self.0)())
    }
    async fn update_twin(&self, _: &str, _: &TwinPatch, _: bool) -> Result<Twin, HubCallError> {
        Err((self.0)())
    }
    async fn ping(&self) -> Result<Duration, HubCallError> {
        Err((self.0)())
    }
}

#[tokio::test]
async fn untrusted_and_rejecting_hubs_are_refused_unreachable_ones_linked() {
    let setup = common::setup().await;
    let connector = StaticConnector::new()
        .with(
            "untrusted.example",
            Arc::new(Failing(|| {
                HubCallError::Untrusted("restart the server with --trust-ca <its CA>".into())
            })),
        )
        .with(
            "wrong-key.example",
            Arc::new(Failing(|| HubCallError::Status {
                status: 401,
                message: "Unauthorized".into(),
            })),
        )
        .with(
            "down.example",
            Arc::new(Failing(|| {
                HubCallError::Unreachable("connection refused".into())
            })),
        );
    let dps = setup.dps.clone().with_services(Services {
        connector: Arc::new(connector),
        ..Services::default()
    });

    let err = dps
        .put_linked_hub(linked_hub("untrusted.example"), None)
        .await
        .unwrap_err();
    assert_eq!(err.status(), 400);
    assert!(err.to_string().contains("--trust-ca"), "{err}");
    assert!(err.to_string().contains("not trusted"), "{err}");

    let err = dps
        .put_linked_hub(linked_hub("wrong-key.example"), None)
        .await
        .unwrap_err();
    assert_eq!(err.status(), 400);
    assert!(err.to_string().contains("iothubowner"), "{err}");

    for refused in ["untrusted.example", "wrong-key.example"] {
        assert_eq!(
            dps.get_linked_hub(refused).await.unwrap_err().status(),
            404,
            "{refused} was stored"
        );
    }

    let down = dps
        .put_linked_hub(linked_hub("down.example"), None)
        .await
        .unwrap();
    assert_eq!(down.name, "down.example");
}
