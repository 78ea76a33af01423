//! The console's sign-in with a bearer token, in process: a hub with local authentication off
//! and an OpenID Connect issuer whose keys are fixed here. Tokens sign in and act with their
//! roles, policies are refused with the REST API's words, bad tokens count against the client
//! address's failed sign-ins, and a session ends no later than its token.
#![allow(clippy::unwrap_used)]

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use axum::http::{StatusCode, header};
use axum::response::Response;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ironhub_auth::access::ServiceAccess;
use ironhub_auth::oidc::{IOT_HUB_AUDIENCE, KeySource, Oidc, OidcSettings};
use ironhub_auth::unix_now;
use ironhub_console::session::{self, Bearer, Session};
use ironhub_embedded::{LocalBus, SqliteEventLog, SqliteStore};
use ironhub_hub::{Backends, Hub};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use ring::rand::SystemRandom;
use ring::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair as _};
use serde_json::{Value, json};
use tower::ServiceExt as _;

mod support;
use support::{field, request, text};

const HOST: &str = "myhub.example";
const ISSUER: &str = "https://idp.example/tenant";

/// The issuer's one published key, as a JWKS.
#[derive(Debug)]
struct Fixed(Value);

impl KeySource for Fixed {
    fn fetch(&self) -> Pin<Box<dyn Future<Output = Result<Vec<u8>, String>> + Send + '_>> {
        Box::pin(std::future::ready(Ok(self.0.to_string().into_bytes())))
    }
}

/// A P-256 key: its PKCS#8 document and its JWKS under `kid`.
fn key(kid: &str) -> (Vec<u8>, Value) {
    let rng = SystemRandom::new();
    let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng).unwrap();
    let pair =
        EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref(), &rng).unwrap();
    let point = pair.public_key().as_ref();
    let jwk = json!({"kty": "EC", "crv": "P-256", "kid": kid, "alg": "ES256",
        "x": URL_SAFE_NO_PAD.encode(&point[1..33]), "y": URL_SAFE_NO_PAD.encode(&point[33..])});
    (pkcs8.as_ref().to_vec(), json!({ "keys": [jwk] }))
}

struct Setup {
    hub: Hub,
    pkcs8: Vec<u8>,
    _dir: tempfile::TempDir,
}

async fn setup() -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(SqliteStore::open(dir.path()).unwrap());
    let backends = Backends {
        store: store.clone(),
        events: Arc::new(SqliteEventLog::open(dir.path(), 4).unwrap()),
        bus: Arc::new(LocalBus::new()),
    };
    let (pkcs8, jwks) = key("k1");
    let settings = OidcSettings {
        issuer: ISSUER.into(),
        leeway_seconds: 60,
        role_claim: "roles".into(),
        assignments: Vec::new(),
    };
    let access = ServiceAccess {
        oidc: Some(Arc::new(Oidc::new(settings, Arc::new(Fixed(jwks))))),
        audience: IOT_HUB_AUDIENCE.into(),
        local_auth: false,
    };
    let hub = Hub::open(backends, vec![HOST.into()])
        .await
        .unwrap()
        .with_rate_windows(store)
        .with_service_access(access);
    Setup {
        hub,
        pkcs8,
        _dir: dir,
    }
}

impl Setup {
    /// A token of the issuer with `roles`, for `audience`, expiring `lifetime` seconds from now.
    fn token(&self, roles: &[&str], audience: &str, lifetime: i64) -> String {
        let now = unix_now() as i64;
        let claims = json!({"iss": ISSUER, "aud": audience, "exp": now + lifetime, "nbf": now - 5,
            "oid": "oid-1", "upn": "ada@example", "roles": roles});
        let mut header = Header::new(Algorithm::ES256);
        header.kid = Some("k1".into());
        jsonwebtoken::encode(&header, &claims, &EncodingKey::from_ec_der(&self.pkcs8)).unwrap()
    }

    async fn call(&self, method: &str, uri: &str, cookie: Option<&str>, form: &str) -> Response {
        let mut request = request(method, uri, cookie, form);
        request
            .extensions_mut()
            .insert(ironhub_hub::network::Peer::public(
                "192.0.2.7".parse().unwrap(),
            ));
        ironhub_console::routes(self.hub.clone())
            .oneshot(request)
            .await
            .unwrap()
    }

    async fn sign_in(&self, token: &str) -> Response {
        self.call(
            "POST",
            "/console/signin",
            None,
            &format!("access_token={token}"),
        )
        .await
    }
}

#[tokio::test]
async fn a_token_signs_in_until_its_exp_and_acts_with_its_roles() {
    let s = setup().await;
    let reader = s.token(&["IoT Hub Data Reader"], IOT_HUB_AUDIENCE, 120);
    let response = s.sign_in(&reader).await;
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    let set = response.headers()[header::SET_COOKIE].to_str().unwrap();
    assert!(set.starts_with("ironhub-console=*."), "{set}");
    assert!(set.contains("Secure; HttpOnly; SameSite=Strict"), "{set}");
    // The cookie lasts as long as the token, not the 8 hours of a policy session.
    let max_age: u64 = set
        .split("Max-Age=")
        .nth(1)
        .and_then(|v| v.split(';').next())
        .unwrap()
        .parse()
        .unwrap();
    assert!((115..=120).contains(&max_age), "{max_age}");
    let cookie = set.split(';').next().unwrap().to_owned();
    let overview = text(s.call("GET", "/console", Some(&cookie), "").await).await;
    assert!(
        overview.contains("ada@example (IoT Hub Data Reader)"),
        "{overview}"
    );
    assert!(!overview.contains(&reader), "the token is never in a page");
    // A reader: no create form, and a forged create is refused by the hub's authorization.
    let devices = text(s.call("GET", "/console/devices", Some(&cookie), "").await).await;
    assert!(!devices.contains("create-device"));
    let csrf = field(&overview, "csrf");
    let forged = s
        .call(
            "POST",
            "/console/devices",
            Some(&cookie),
            &format!("csrf={csrf}&device_id=forged"),
        )
        .await;
    assert_eq!(forged.status(), StatusCode::UNAUTHORIZED);
    assert!(s.hub.get_device("forged").await.is_err());
    // A contributor creates.
    let contributor = s.token(&["IoT Hub Data Contributor"], IOT_HUB_AUDIENCE, 120);
    let set = s.sign_in(&contributor).await.headers()[header::SET_COOKIE]
        .to_str()
        .unwrap()
        .to_owned();
    let cookie = set.split(';').next().unwrap().to_owned();
    let csrf = field(
        &text(s.call("GET", "/console", Some(&cookie), "").await).await,
        "csrf",
    );
    let created = s
        .call(
            "POST",
            "/console/devices",
            Some(&cookie),
            &format!("csrf={csrf}&device_id=d1"),
        )
        .await;
    assert_eq!(created.status(), StatusCode::SEE_OTHER);
    assert!(s.hub.get_device("d1").await.is_ok());
}

#[tokio::test]
async fn a_session_past_its_exp_is_over() {
    let s = setup().await;
    let owner = s.hub.settings().policy("iothubowner").unwrap().clone();
    let bearer = Bearer {
        token: s.token(&["IoT Hub Data Contributor"], IOT_HUB_AUDIENCE, 600),
        name: "ada@example".into(),
        roles: vec!["IoT Hub Data Contributor".into()],
    };
    let seal = |exp| {
        let value =
            session::seal_bearer(&bearer, &owner, HOST, &Session::until(exp).unwrap()).unwrap();
        format!("{}={value}", session::COOKIE)
    };
    let live = s
        .call("GET", "/console", Some(&seal(unix_now() + 30)), "")
        .await;
    assert_eq!(live.status(), StatusCode::OK);
    let over = s
        .call("GET", "/console", Some(&seal(unix_now() - 1)), "")
        .await;
    assert_eq!(over.status(), StatusCode::SEE_OTHER);
    assert_eq!(over.headers()[header::LOCATION], "/console/signin");
}

#[tokio::test]
async fn policies_are_refused_and_bad_tokens_count_as_failed_sign_ins() {
    let s = setup().await;
    let key = s
        .hub
        .settings()
        .policy("iothubowner")
        .unwrap()
        .primary_key
        .clone();
    let form = format!(
        "policy=iothubowner&key={}",
        ironhub_auth::sas::url_encode(&key)
    );
    let refused = s.call("POST", "/console/signin", None, &form).await;
    assert_eq!(refused.status(), StatusCode::UNAUTHORIZED);
    assert!(refused.headers().get(header::SET_COOKIE).is_none());
    let page = text(refused).await;
    assert!(
        page.contains("local authentication (shared access policies) is disabled"),
        "{page}"
    );
    let bad = [
        s.token(&["IoT Hub Data Contributor"], IOT_HUB_AUDIENCE, -120),
        s.token(
            &["IoT Hub Data Contributor"],
            "https://management.azure.com",
            600,
        ),
        s.token(&[], IOT_HUB_AUDIENCE, 600),
        "not-a-jwt".to_owned(),
    ];
    for token in &bad {
        let response = s.sign_in(token).await;
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED, "{token}");
        assert!(response.headers().get(header::SET_COOKIE).is_none());
        let page = text(response).await;
        assert!(page.contains("id=\"access_token-error\""), "{page}");
    }
    // Five failures in a minute, unless a minute ended among them: then the sixth.
    let good = s.token(&["IoT Hub Data Reader"], IOT_HUB_AUDIENCE, 600);
    let mut refused = false;
    for _ in 0..6 {
        let response = s.sign_in(&bad[0]).await;
        if response.status() == StatusCode::TOO_MANY_REQUESTS {
            refused = true;
            break;
        }
    }
    assert!(refused, "bad tokens count against the address");
    assert_eq!(
        s.sign_in(&good).await.status(),
        StatusCode::TOO_MANY_REQUESTS
    );
}
