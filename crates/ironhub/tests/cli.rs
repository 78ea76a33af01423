//! `ironhub hub …` and `ironhub-client` end to end: an in-process server, the real binary, and
//! the outputs scripts rely on.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::Output;

use ironhub::config::ServeArgs;
use ironhub::serve::{Server, start};
use ironhub_auth::{ConnectionString, SasToken};
use ironhub_client::HubClient;
use ironhub_wire::hub::{DeviceSpec, DeviceStatus, ExportImportDevice};
use serde_json::{Value, json};

struct TestHub {
    server: Server,
    dir: tempfile::TempDir,
}

async fn hub() -> TestHub {
    let dir = tempfile::tempdir().unwrap();
    let args = ServeArgs {
        data_dir: Some(dir.path().to_owned()),
        hostnames: vec!["127.0.0.1".into()],
        https_listen: Some("127.0.0.1:0".parse().unwrap()),
        mqtt_listen: Some("127.0.0.1:0".parse().unwrap()),
        ..ServeArgs::default()
    };
    let server = start(&args.resolve().unwrap()).await.unwrap();
    TestHub { server, dir }
}

impl TestHub {
    fn host(&self) -> String {
        format!("127.0.0.1:{}", self.server.https_addr.port())
    }

    /// The owner connection string, as `ironhub hub connection-string show` prints it.
    fn owner_login(&self) -> String {
        let out = self.cli(&["connection-string", "show"]);
        let v: Value = serde_json::from_slice(&out.stdout).unwrap();
        v["connectionString"].as_str().unwrap().to_owned()
    }

    /// Runs `ironhub hub ARGS --data-dir DIR`.
    fn cli(&self, args: &[&str]) -> Output {
        let out = run(args, &[("IRONHUB_DATA_DIR", self.dir.path().as_os_str())]);
        assert!(
            out.status.success(),
            "ironhub hub {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        out
    }

    fn json(&self, args: &[&str]) -> Value {
        serde_json::from_slice(&self.cli(args).stdout).unwrap()
    }

    fn client(&self) -> HubClient {
        let cs = ConnectionString::parse(&self.owner_login()).unwrap();
        HubClient::new(cs, std::slice::from_ref(&self.server.ca_certificate)).unwrap()
    }
}

/// Runs `ironhub hub ARGS` with only the given `IRONHUB_*`/TLS variables set.
fn run(args: &[&str], env: &[(&str, &std::ffi::OsStr)]) -> Output {
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_ironhub"));
    cmd.arg("hub").args(args).current_dir(std::env::temp_dir());
    for var in [
        "IRONHUB_DATA_DIR",
        "IRONHUB_CONNECTION_STRING",
        "SSL_CERT_FILE",
        "SSL_CERT_DIR",
    ] {
        cmd.env_remove(var);
    }
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().unwrap()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn device_identity_lifecycle_from_the_data_dir() {
    let hub = hub().await;
    let host = hub.host();

    let created = hub.json(&["device-identity", "create", "-d", "d1"]);
    assert_eq!(created["deviceId"], "d1");
    assert_eq!(created["authentication"]["type"], "sas");
    let primary = created["authentication"]["symmetricKey"]["primaryKey"]
        .as_str()
        .unwrap()
        .to_owned();
    let secondary = created["authentication"]["symmetricKey"]["secondaryKey"]
        .as_str()
        .unwrap()
        .to_owned();

    let x509 = hub.json(&[
        "device-identity",
        "create",
        "-d",
        "x1",
        "--am",
        "x509_thumbprint",
        "--ptp",
        &"AB".repeat(20),
        "--ee",
    ]);
    assert_eq!(x509["authentication"]["type"], "selfSigned");
    assert_eq!(x509["capabilities"]["iotEdge"], true);

    let shown = hub.json(&["device-identity", "show", "-d", "d1"]);
    assert_eq!(shown, created);

    let list = hub.json(&["device-identity", "list"]);
    assert_eq!(list.as_array().unwrap().len(), 2);
    let edge = hub.json(&["device-identity", "list", "--ee"]);
    assert_eq!(edge.as_array().unwrap().len(), 1);
    assert_eq!(edge[0]["deviceId"], "x1");

    let updated = hub.json(&[
        "device-identity",
        "update",
        "-d",
        "d1",
        "--sta",
        "disabled",
        "--star",
        "maintenance",
    ]);
    assert_eq!(updated["status"], "disabled");
    assert_eq!(updated["statusReason"], "maintenance");
    assert_ne!(updated["etag"], created["etag"]);
    assert_eq!(
        updated["authentication"]["symmetricKey"]["primaryKey"],
        primary.as_str(),
        "an update that names no keys keeps them"
    );

    let cs = hub.json(&["device-identity", "connection-string", "show", "-d", "d1"]);
    assert_eq!(
        cs,
        json!({"connectionString": format!("HostName={host};DeviceId=d1;SharedAccessKey={primary}")})
    );
    let cs = hub.json(&[
        "device-identity",
        "connection-string",
        "show",
        "-d",
        "d1",
        "--kt",
        "secondary",
    ]);
    assert_eq!(
        cs["connectionString"],
        format!("HostName={host};DeviceId=d1;SharedAccessKey={secondary}")
    );
    let cs = hub.json(&["device-identity", "connection-string", "show", "-d", "x1"]);
    assert_eq!(
        cs["connectionString"],
        format!("HostName={host};DeviceId=x1;x509=true")
    );

    let sas = hub.json(&["generate-sas-token", "-d", "d1", "--du", "120"]);
    let text = sas["sas"].as_str().unwrap();
    let token = SasToken::parse(text).unwrap();
    token.verify_keys([primary.as_str()]).unwrap();
    token.check_resource("127.0.0.1/devices/d1").unwrap();
    assert_eq!(token.key_name(), None);
    assert!(token.expiry() <= ironhub_auth::unix_now() + 120);

    let delete = hub.cli(&["device-identity", "delete", "-d", "d1"]);
    assert!(delete.stdout.is_empty(), "delete prints nothing");

    let missing = run(
        &["device-identity", "show", "-d", "d1"],
        &[("IRONHUB_DATA_DIR", hub.dir.path().as_os_str())],
    );
    assert!(!missing.status.success());
    assert_eq!(
        stderr(&missing),
        "error: DeviceNotFound: Device d1 not found.\n"
    );
    hub.server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn login_with_a_connection_string_and_a_cafile() {
    let hub = hub().await;
    let login = hub.owner_login();
    let ca = hub.server.ca_certificate.clone();
    let ca_arg = ca.to_str().unwrap();

    // Without the CA the server is not trusted, and the message says what to do.
    let out = run(&["device-identity", "list", "-l", &login], &[]);
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(err.starts_with("error: certificate not trusted"), "{err}");
    assert!(err.contains("--cafile"), "{err}");

    let out = run(
        &[
            "device-identity",
            "create",
            "-d",
            "d2",
            "-l",
            &login,
            "--cafile",
            ca_arg,
        ],
        &[],
    );
    assert!(out.status.success(), "{}", stderr(&out));

    // The environment variables work as well as the flags.
    let out = run(
        &["device-identity", "list", "-n", "127.0.0.1"],
        &[
            ("IRONHUB_CONNECTION_STRING", login.as_ref()),
            ("SSL_CERT_FILE", ca.as_os_str()),
        ],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let list: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(list[0]["deviceId"], "d2");

    let out = run(
        &[
            "device-identity",
            "list",
            "-n",
            "otherhub",
            "-l",
            &login,
            "--cafile",
            ca_arg,
        ],
        &[],
    );
    assert!(!out.status.success());
    assert!(stderr(&out).contains("--hub-name 'otherhub' does not match"));

    // A hub token made from the login authenticates REST calls.
    let out = run(&["generate-sas-token", "-l", &login], &[]);
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    let token = SasToken::parse(v["sas"].as_str().unwrap()).unwrap();
    assert_eq!(token.key_name(), Some("iothubowner"));
    let out = run(&["connection-string", "show", "-l", &login], &[]);
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["connectionString"], login.as_str());
    hub.server.shutdown().await;
}

fn spec(v: Value) -> DeviceSpec {
    serde_json::from_value(v).unwrap()
}

fn items(v: Value) -> Vec<ExportImportDevice> {
    serde_json::from_value(v).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_reports_azure_errors_and_reads_statistics() {
    let hub = hub().await;
    let client = hub.client();
    let body = spec(json!({"deviceId": "c1", "authentication": {"type": "sas"}}));
    let created = client.create_device("c1", &body).await.unwrap();
    let etag = created.etag.clone();

    let again = client.create_device("c1", &body).await.unwrap_err();
    assert_eq!(again.status(), Some(409));
    assert_eq!(again.code(), Some("DeviceAlreadyExists"));

    let stale = client
        .update_device(
            "c1",
            &spec(json!({"deviceId": "c1", "status": "disabled"})),
            Some("bm9wZQ=="),
        )
        .await
        .unwrap_err();
    assert_eq!(stale.status(), Some(412));
    assert_eq!(stale.code(), Some("PreconditionFailed"));
    let ok = client
        .update_device(
            "c1",
            &spec(json!({"deviceId": "c1", "status": "disabled"})),
            Some(&etag),
        )
        .await
        .unwrap();
    assert_eq!(ok.status, DeviceStatus::Disabled);

    let stats = client.registry_statistics().await.unwrap();
    assert_eq!(stats.total_device_count, 1);
    assert_eq!(stats.disabled_device_count, 1);

    let bulk = client
        .bulk(&items(json!([
            {"id": "b1", "importMode": "create", "authentication": {"type": "sas"}},
            {"id": "b2", "importMode": "create", "authentication": {"type": "sas"}},
        ])))
        .await
        .unwrap();
    assert!(bulk.is_successful);
    // A refused batch answers 400 with the per-device errors, which the client returns.
    let refused = client
        .bulk(&items(json!([
            {"id": "b3", "importMode": "create"},
            {"id": "b1", "importMode": "create"},
        ])))
        .await
        .unwrap();
    assert!(!refused.is_successful);
    assert_eq!(refused.errors[0].device_id, "b1");
    assert_eq!(refused.errors[0].error_code, "DeviceAlreadyExists");
    // A 400 of another shape (an error body: the batch is empty) is still an error.
    let empty = client.bulk(&[]).await.unwrap_err();
    assert_eq!(empty.status(), Some(400));
    assert_eq!(client.list_devices(Some(2)).await.unwrap().len(), 2);
    assert_eq!(client.list_devices(None).await.unwrap().len(), 3);

    client.delete_device("c1", None).await.unwrap();
    let gone = client.get_device("c1").await.unwrap_err();
    assert_eq!(gone.to_string(), "DeviceNotFound: Device c1 not found.");

    // A device id that needs percent-encoding in the path.
    let id = "a:b$c'(d)%e";
    let made = client
        .create_device(id, &spec(json!({"deviceId": id})))
        .await
        .unwrap();
    assert_eq!(made.device_id, id);
    assert_eq!(client.get_device(id).await.unwrap().device_id, id);
    hub.server.shutdown().await;
}

#[test]
fn no_login_says_how_to_log_in() {
    let out = run(&["device-identity", "list"], &[]);
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(err.contains("no login: pass --login"), "{err}");
}

/// `ironhub info --json` shows the DPS instance the server created at its first start, and a
/// restart keeps its ID scope and keys.
#[tokio::test]
async fn info_shows_the_dps_instance_and_a_restart_keeps_it() {
    let dir = tempfile::tempdir().unwrap();
    let args = ServeArgs {
        data_dir: Some(dir.path().to_owned()),
        hostnames: vec!["127.0.0.1".into()],
        https_listen: Some("127.0.0.1:0".parse().unwrap()),
        mqtt_listen: Some("127.0.0.1:0".parse().unwrap()),
        ..ServeArgs::default()
    };
    let info = |dir: &std::path::Path| -> Value {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_ironhub"))
            .args(["info", "--json", "--data-dir"])
            .arg(dir)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).unwrap()
    };
    let config = args.resolve().unwrap();
    let server = start(&config).await.unwrap();
    let port = server.https_addr.port();
    let first = info(dir.path());
    let dps = &first["dps"];
    assert_eq!(dps["idScope"], server.dps.id_scope());
    assert_eq!(dps["hostName"], "127.0.0.1");
    let cs = ConnectionString::parse(dps["serviceConnectionString"].as_str().unwrap()).unwrap();
    assert_eq!(cs.host_name, format!("127.0.0.1:{port}"));
    assert_eq!(
        cs.shared_access_key_name.as_deref(),
        Some("provisioningserviceowner")
    );
    assert_eq!(
        cs.shared_access_key.as_deref(),
        Some(server.dps.settings().policies[0].primary_key.as_str())
    );
    // The hub fields are unchanged, and the server's own hub is the first linked hub.
    assert_eq!(first["hub"]["hostName"], "127.0.0.1");
    let linked = server.dps.list_linked_hubs().await.unwrap();
    assert_eq!(linked.len(), 1);
    assert_eq!(linked[0].name, "127.0.0.1");
    server.shutdown().await;

    let again = start(&config).await.unwrap();
    let second = info(dir.path());
    assert_eq!(second["dps"]["idScope"], first["dps"]["idScope"]);
    let cs2 = ConnectionString::parse(second["dps"]["serviceConnectionString"].as_str().unwrap())
        .unwrap();
    assert_eq!(cs2.shared_access_key, cs.shared_access_key);
    again.shutdown().await;
}

/// `serve --hostname myhub.invalid` (a name no DNS resolves, as a real hub name often does not
/// on the server's own machine): the CLI logged in from the data directory dials the listen
/// address (loopback for 0.0.0.0) and checks the certificate against the hub's name.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn data_dir_login_works_when_the_hub_name_does_not_resolve() {
    const NAME: &str = "myhub.invalid";
    assert!(
        tokio::net::lookup_host((NAME, 443)).await.is_err(),
        "{NAME} resolves here; the test needs a name that does not"
    );
    let dir = tempfile::tempdir().unwrap();
    let args = ServeArgs {
        data_dir: Some(dir.path().to_owned()),
        hostnames: vec![NAME.into()],
        https_listen: Some("0.0.0.0:0".parse().unwrap()),
        mqtt_listen: Some("127.0.0.1:0".parse().unwrap()),
        ..ServeArgs::default()
    };
    let server = start(&args.resolve().unwrap()).await.unwrap();
    let port = server.https_addr.port();
    let hub = TestHub { server, dir };

    let created = hub.json(&["device-identity", "create", "-d", "far1"]);
    assert_eq!(created["deviceId"], "far1");
    let cs = hub.json(&["device-identity", "connection-string", "show", "-d", "far1"]);
    let cs = ConnectionString::parse(cs["connectionString"].as_str().unwrap()).unwrap();
    assert_eq!(cs.host_name, format!("{NAME}:{port}"));
    assert_eq!(cs.device_id.as_deref(), Some("far1"));
    let listed = hub.json(&["device-identity", "list"]);
    assert_eq!(listed.as_array().unwrap().len(), 1, "{listed}");

    // The same login given as a connection string has no listen address to dial: it goes
    // through DNS and says the name does not resolve.
    let login = hub.owner_login();
    let ca = hub.server.ca_certificate.to_str().unwrap().to_owned();
    let out = run(
        &[
            "device-identity",
            "list",
            "--login",
            &login,
            "--cafile",
            &ca,
        ],
        &[],
    );
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(err.contains(NAME), "{err}");

    // Dialling the address does not loosen the certificate check: a name the certificate
    // does not carry is refused even at the right address.
    let mut other = ConnectionString::parse(&login).unwrap();
    other.host_name = format!("other.invalid:{port}");
    let address = format!("127.0.0.1:{port}").parse().unwrap();
    let client = HubClient::connecting_to(
        other,
        std::slice::from_ref(&hub.server.ca_certificate),
        address,
    )
    .unwrap();
    let e = client.get_device("far1").await.unwrap_err();
    assert!(
        matches!(e, ironhub_client::ClientError::CertificateWrongName { .. }),
        "{e}"
    );
    hub.server.shutdown().await;
}
