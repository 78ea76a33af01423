//! The DPS instance: ID scope, policies, linked hubs, service authorization.
#![allow(clippy::unwrap_used)]

mod common;

use std::sync::Arc;

use common::{DPS_HOST, KEY, SE, linked_hub, setup};
use ironhub_auth::Rights;
use ironhub_auth::sas::generate;
use ironhub_dps::Dps;
use ironhub_embedded::SqliteStore;
use ironhub_store::Store;

#[tokio::test]
async fn the_id_scope_is_made_once_and_the_own_hub_linked_at_first_start() {
    let dir = tempfile::tempdir().unwrap();
    let scope = {
        let store: Arc<dyn Store> = Arc::new(SqliteStore::open(dir.path()).unwrap());
        let dps = Dps::open(
            store,
            vec!["localhost".into()],
            Some(linked_hub("localhost")),
        )
        .await
        .unwrap();
        assert!(dps.id_scope().starts_with("0ne"));
        assert_eq!(dps.host_name(), "localhost");
        let hubs = dps.list_linked_hubs().await.unwrap();
        assert_eq!(hubs.len(), 1);
        assert_eq!(hubs[0].name, "localhost");
        // An operator unlinks it ...
        dps.delete_linked_hub("LOCALHOST", None).await.unwrap();
        dps.id_scope().to_owned()
    };
    // ... and it stays unlinked; the scope never changes.
    let store: Arc<dyn Store> = Arc::new(SqliteStore::open(dir.path()).unwrap());
    let dps = Dps::open(
        store,
        vec!["localhost".into()],
        Some(linked_hub("localhost")),
    )
    .await
    .unwrap();
    assert_eq!(dps.id_scope(), scope);
    assert!(dps.list_linked_hubs().await.unwrap().is_empty());
    assert!(dps.check_id_scope(&scope.to_ascii_lowercase()).is_ok());
    assert_eq!(dps.check_id_scope("0ne99999999").unwrap_err().status(), 404);
}

#[tokio::test]
async fn linked_hubs_are_checked_and_compare_and_swap() {
    let s = setup().await;
    let dps = &s.dps;
    let again = dps.put_linked_hub(linked_hub("HUB1.example"), None).await;
    assert_eq!(again.unwrap_err().status(), 409);
    let mut wrong = linked_hub("hub3.example");
    wrong.connection_string =
        "HostName=other.example;SharedAccessKeyName=x;SharedAccessKey=a2V5".into();
    assert_eq!(
        dps.put_linked_hub(wrong, None).await.unwrap_err().status(),
        400
    );
    let mut no_key = linked_hub("hub3.example");
    no_key.connection_string = "HostName=hub3.example".into();
    assert_eq!(
        dps.put_linked_hub(no_key, None).await.unwrap_err().status(),
        400
    );
    // A port in the connection string is fine (ironhub's own hub on a test port).
    let mut ported = linked_hub("hub3.example");
    ported.connection_string =
        format!("HostName=hub3.example:8443;SharedAccessKeyName=iothubowner;SharedAccessKey={KEY}");
    let hub3 = dps.put_linked_hub(ported, None).await.unwrap();
    let mut heavier = hub3.clone();
    heavier.allocation_weight = Some(5);
    let stale = dps.put_linked_hub(heavier.clone(), Some("nope")).await;
    assert_eq!(stale.unwrap_err().status(), 412);
    let updated = dps
        .put_linked_hub(heavier, hub3.etag.as_deref())
        .await
        .unwrap();
    assert_eq!(updated.weight(), 5);
    assert_ne!(updated.etag, hub3.etag);
    // The connection string holds a key: Debug never shows it.
    assert!(!format!("{updated:?}").contains(KEY));
    assert_eq!(
        dps.delete_linked_hub("nothing.example", None)
            .await
            .unwrap_err()
            .status(),
        404
    );
}

#[tokio::test]
async fn service_tokens_need_the_host_a_policy_key_and_the_rights() {
    let s = setup().await;
    let dps = &s.dps;
    let now = ironhub_auth::unix_now();
    // The Node service vector of docs/protocol/sas-tokens.md, "Test vectors" (raw sr, order
    // sr,sig,skn,se); it expires in 2026,
    // so it is checked for as long as it is valid.
    let node = "SharedAccessSignature sr=mydps.azure-devices-provisioning.net&sig=ffOoGlOG6cJTgdv%2FBpg4lo6H%2FbBYEVK9DDDdrdM%2Bkls%3D&skn=provisioningserviceowner&se=1795310676";
    if now < SE {
        let p = dps
            .authorize_service(Some(node), Rights::ENROLLMENT_WRITE)
            .unwrap();
        assert_eq!(p.policy, "provisioningserviceowner");
    }
    let later = now + 3600;
    let owner = generate(DPS_HOST, KEY, later, Some("provisioningserviceowner")).unwrap();
    dps.authorize_service(
        Some(&owner),
        Rights::REGISTRATION_STATUS_WRITE | Rights::SERVICE_CONFIG,
    )
    .unwrap();
    // A scheme and a port in sr are ignored, and a path below the host is a narrower grant.
    let with_scheme = generate(
        &format!("https://{DPS_HOST}:443"),
        KEY,
        later,
        Some("provisioningserviceowner"),
    )
    .unwrap();
    dps.authorize_service(Some(&with_scheme), Rights::ENROLLMENT_READ)
        .unwrap();
    let reader = generate(DPS_HOST, KEY, later, Some("enrollmentread")).unwrap();
    dps.authorize_service(Some(&reader), Rights::ENROLLMENT_READ)
        .unwrap();
    let refused = [
        (
            dps.authorize_service(Some(&reader), Rights::ENROLLMENT_WRITE),
            "rights",
        ),
        (
            dps.authorize_service(None, Rights::ENROLLMENT_READ),
            "no header",
        ),
        (
            dps.authorize_service(
                Some(
                    &generate(
                        "otherdps.example",
                        KEY,
                        later,
                        Some("provisioningserviceowner"),
                    )
                    .unwrap(),
                ),
                Rights::ENROLLMENT_READ,
            ),
            "other host",
        ),
        (
            dps.authorize_service(
                Some(&generate(DPS_HOST, KEY, now - 1, Some("provisioningserviceowner")).unwrap()),
                Rights::ENROLLMENT_READ,
            ),
            "expired",
        ),
        (
            dps.authorize_service(
                Some(&generate(DPS_HOST, KEY, later, Some("nosuchpolicy")).unwrap()),
                Rights::ENROLLMENT_READ,
            ),
            "unknown policy",
        ),
        (
            dps.authorize_service(
                Some(&generate(DPS_HOST, KEY, later, None).unwrap()),
                Rights::ENROLLMENT_READ,
            ),
            "no skn",
        ),
        (
            dps.authorize_service(
                Some(
                    &generate(
                        DPS_HOST,
                        "b3RoZXJrZXlvdGhlcmtleW90aGVya2V5b3RoZXJrZXk=",
                        later,
                        Some("provisioningserviceowner"),
                    )
                    .unwrap(),
                ),
                Rights::ENROLLMENT_READ,
            ),
            "wrong key",
        ),
    ];
    for (r, why) in refused {
        let e = r.unwrap_err();
        assert_eq!((e.status(), e.code()), (401, 401_002), "{why}");
    }
}
