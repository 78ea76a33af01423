//! `ironhub dps …` end to end: an in-process server, the real binary, and what its output
//! tells a user (the server side of each call is tested in the DPS crates; these check the
//! commands, their flags and their answers).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::ffi::OsStr;
use std::process::Output;
use std::time::Duration;

use ironhub::config::ServeArgs;
use ironhub::serve::{Server, start};
use ironhub_auth::{ConnectionString, derive_device_key, sas, unix_now};
use ironhub_dps::model::{DeviceRegistration, IndividualEnrollment, RegistrationStatus};
use serde_json::{Value, json};

struct TestDps {
    server: Server,
    dir: tempfile::TempDir,
}

async fn dps() -> TestDps {
    let dir = tempfile::tempdir().unwrap();
    let args = ServeArgs {
        data_dir: Some(dir.path().to_owned()),
        hostnames: vec!["127.0.0.1".into()],
        https_listen: Some("127.0.0.1:0".parse().unwrap()),
        mqtt_listen: Some("127.0.0.1:0".parse().unwrap()),
        ..ServeArgs::default()
    };
    let server = start(&args.resolve().unwrap()).await.unwrap();
    TestDps { server, dir }
}

impl TestDps {
    /// Runs `ironhub dps ARGS` logged in from the data directory; it must succeed.
    fn cli(&self, args: &[&str]) -> Output {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "ironhub dps {args:?} failed: {}",
            stderr(&out)
        );
        out
    }

    fn run(&self, args: &[&str]) -> Output {
        run(args, &[("IRONHUB_DATA_DIR", self.dir.path().as_os_str())])
    }

    fn json(&self, args: &[&str]) -> Value {
        serde_json::from_slice(&self.cli(args).stdout).unwrap()
    }

    /// `ironhub dps ARGS` that must fail (exit 1, not a usage error); returns stderr.
    fn fails(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert_eq!(
            out.status.code(),
            Some(1),
            "ironhub dps {args:?} should fail: {}",
            String::from_utf8_lossy(&out.stdout)
        );
        assert!(out.stdout.is_empty(), "a failure prints nothing on stdout");
        stderr(&out)
    }

    /// `ironhub info --json`.
    fn info(&self) -> Value {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_ironhub"))
            .args(["info", "--json", "--data-dir"])
            .arg(self.dir.path())
            .output()
            .unwrap();
        serde_json::from_slice(&out.stdout).unwrap()
    }

    /// The DPS service connection string, as `ironhub info --json` prints it.
    fn dps_login(&self) -> String {
        str_of(&self.info(), "/dps/serviceConnectionString").to_owned()
    }

    /// A device registers with `key` (through the DPS domain, as the device API does) and
    /// ends assigned.
    async fn register(&self, registration_id: &str, key: &str) {
        let dps = &self.server.dps;
        let scope = dps.id_scope().to_owned();
        let token = sas::generate(
            &format!("{scope}/registrations/{registration_id}"),
            key,
            unix_now() + 3600,
            Some("registration"),
        )
        .unwrap();
        let attested = dps
            .attest_symmetric_key(&scope, registration_id, &token)
            .await
            .unwrap();
        let started = dps
            .register(
                attested,
                DeviceRegistration {
                    registration_id: Some(registration_id.into()),
                    tpm: None,
                    payload: None,
                    csr: None,
                },
                None,
            )
            .await
            .unwrap();
        for _ in 0..500 {
            let op = dps
                .operation_status(registration_id, &started.operation_id)
                .await
                .unwrap();
            if op.status != RegistrationStatus::Assigning {
                assert_eq!(op.status, RegistrationStatus::Assigned, "{op:?}");
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("the registration of {registration_id} did not finish");
    }
}

/// Runs `ironhub dps ARGS` with only the given `IRONHUB_*`/TLS variables set.
fn run(args: &[&str], env: &[(&str, &OsStr)]) -> Output {
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_ironhub"));
    cmd.arg("dps").args(args).current_dir(std::env::temp_dir());
    for var in [
        "IRONHUB_DATA_DIR",
        "IRONHUB_CONNECTION_STRING",
        "IRONHUB_DPS_CONNECTION_STRING",
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

fn str_of<'v>(v: &'v Value, pointer: &str) -> &'v str {
    v.pointer(pointer)
        .and_then(Value::as_str)
        .unwrap_or_else(|| panic!("no {pointer} in {v}"))
}

const KEY1: &str = "cHJpbWFyeWtleXByaW1hcnlrZXlwcmltYXJ5a2V5MDE=";
const KEY2: &str = "c2Vjb25kYXJ5a2V5c2Vjb25kYXJ5a2V5c2Vjb25kYXI=";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn enrollment_lifecycle_and_its_registration() {
    let dps = dps().await;

    let created = dps.json(&[
        "enrollment",
        "create",
        "--eid",
        "dev-1",
        "--at",
        "symmetrickey",
        "--pk",
        KEY1,
        "--sk",
        KEY2,
        "--tags",
        "{'site': 'lab'}",
        "--props",
        r#"{"fw": "1.0"}"#,
        "--device-id",
        "device-one",
    ]);
    assert_eq!(created["registrationId"], "dev-1");
    assert_eq!(created["deviceId"], "device-one");
    assert_eq!(created["provisioningStatus"], "enabled");
    assert_eq!(created["attestation"]["symmetricKey"]["primaryKey"], KEY1);
    assert_eq!(created["initialTwin"]["tags"], json!({"site": "lab"}));
    assert_eq!(
        created["initialTwin"]["properties"]["desired"],
        json!({"fw": "1.0"})
    );
    assert_eq!(
        created["reprovisionPolicy"],
        json!({"updateHubAssignment": true, "migrateDeviceData": true}),
        "az's default reprovision policy is sent"
    );

    // A read shows no keys; --show-keys does.
    let shown = dps.json(&["enrollment", "show", "--enrollment-id", "dev-1"]);
    assert_eq!(
        shown["attestation"],
        json!({"type": "symmetricKey", "symmetricKey": {}})
    );
    let keys = dps.json(&["enrollment", "show", "--eid", "dev-1", "--show-keys"]);
    assert_eq!(keys["attestation"]["symmetricKey"]["secondaryKey"], KEY2);

    // An update changes what it names and keeps the keys and the twin.
    let updated = dps.json(&[
        "enrollment",
        "update",
        "--eid",
        "dev-1",
        "--ps",
        "disabled",
        "--rp",
        "reprovisionandresetdata",
        "--ee",
    ]);
    assert_eq!(updated["provisioningStatus"], "disabled");
    assert_eq!(
        updated["reprovisionPolicy"],
        json!({"updateHubAssignment": true, "migrateDeviceData": false})
    );
    assert_eq!(updated["capabilities"]["iotEdge"], true);
    assert_eq!(updated["attestation"]["symmetricKey"]["primaryKey"], KEY1);
    assert_eq!(updated["initialTwin"]["tags"], json!({"site": "lab"}));
    assert_ne!(updated["etag"], created["etag"]);

    // A stale etag is refused and changes nothing; the current one works.
    let err = dps.fails(&[
        "enrollment",
        "update",
        "--eid",
        "dev-1",
        "--ps",
        "enabled",
        "-e",
        str_of(&created, "/etag"),
    ]);
    assert!(
        err.starts_with("error: 412002: Precondition failed"),
        "{err}"
    );
    let enabled = dps.json(&[
        "enrollment",
        "update",
        "--eid",
        "dev-1",
        "--ps",
        "enabled",
        "--etag",
        str_of(&updated, "/etag"),
    ]);
    assert_eq!(enabled["provisioningStatus"], "enabled");

    let list = dps.json(&["enrollment", "list"]);
    assert_eq!(list.as_array().unwrap().len(), 1);
    let table = String::from_utf8(dps.cli(&["enrollment", "list", "-o", "table"]).stdout).unwrap();
    assert!(table.lines().nth(2).unwrap().contains("dev-1"), "{table}");

    // The device registers; its registration shows through `enrollment registration`.
    let err = dps.fails(&["enrollment", "registration", "show", "--eid", "dev-1"]);
    assert_eq!(
        err,
        "error: 404202: The registration 'dev-1' does not exist.\n"
    );
    dps.register("dev-1", KEY2).await;
    let registration = dps.json(&["enrollment", "registration", "show", "--eid", "dev-1"]);
    assert_eq!(registration["status"], "assigned");
    assert_eq!(registration["deviceId"], "device-one");
    assert_eq!(registration["assignedHub"], "127.0.0.1");
    let out = dps.cli(&["enrollment", "registration", "delete", "--eid", "dev-1"]);
    assert!(out.stdout.is_empty(), "delete prints nothing");
    dps.fails(&["enrollment", "registration", "show", "--eid", "dev-1"]);

    let err = dps.fails(&["enrollment", "delete", "--eid", "dev-1", "-e", "stale"]);
    assert!(err.contains("412002"), "{err}");
    let out = dps.cli(&["enrollment", "delete", "--eid", "dev-1"]);
    assert!(out.stdout.is_empty());
    let err = dps.fails(&["enrollment", "show", "--eid", "dev-1"]);
    assert_eq!(
        err,
        "error: 404201: The enrollment 'dev-1' does not exist.\n"
    );
    dps.server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn groups_derive_device_keys_and_list_their_registrations() {
    let dps = dps().await;
    let group = dps.json(&[
        "enrollment-group",
        "create",
        "--gid",
        "fleet",
        "--ap",
        "hashed",
        "--ih",
        "127.0.0.1",
    ]);
    assert_eq!(group["enrollmentGroupId"], "fleet");
    assert_eq!(group["allocationPolicy"], "hashed");
    assert_eq!(group["iotHubs"], json!(["127.0.0.1"]));
    let group_key = str_of(&group, "/attestation/symmetricKey/primaryKey").to_owned();
    assert_eq!(group_key.len(), 88, "DPS generates 64-byte keys");

    // Online (the group's key read from the DPS), offline (no login at all) and the
    // deprecated top-level form agree with the derivation.
    let expected = derive_device_key(&group_key, "sensor-1").unwrap();
    let online = dps.json(&[
        "enrollment-group",
        "compute-device-key",
        "--gid",
        "fleet",
        "--rid",
        "sensor-1",
    ]);
    assert_eq!(online, Value::String(expected.clone()));
    let offline = run(
        &[
            "compute-device-key",
            "--key",
            &group_key,
            "--registration-id",
            "sensor-1",
        ],
        &[],
    );
    assert!(offline.status.success(), "{}", stderr(&offline));
    assert_eq!(
        String::from_utf8(offline.stdout).unwrap(),
        format!("\"{expected}\"\n")
    );
    let table = run(
        &[
            "enrollment-group",
            "compute-device-key",
            "--symmetric-key",
            &group_key,
            "--rid",
            "sensor-1",
            "-o",
            "table",
        ],
        &[],
    );
    assert_eq!(
        String::from_utf8(table.stdout).unwrap(),
        format!("{expected}\n")
    );

    for id in ["sensor-1", "sensor-2", "sensor-3"] {
        dps.register(id, &derive_device_key(&group_key, id).unwrap())
            .await;
    }
    let listed = dps.json(&["enrollment-group", "registration", "list", "--gid", "fleet"]);
    let ids: Vec<&str> = listed
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["registrationId"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["sensor-1", "sensor-2", "sensor-3"]);
    // --top pages on the server (x-ms-max-item-count) and stops.
    let two = dps.json(&[
        "enrollment-group",
        "registration",
        "list",
        "--eid",
        "fleet",
        "--top",
        "2",
    ]);
    assert_eq!(two.as_array().unwrap().len(), 2);
    // az's deprecated `dps registration` works the same.
    let old = dps.json(&["registration", "list", "--group-id", "fleet"]);
    assert_eq!(old, listed);
    let shown = dps.json(&["registration", "show", "--registration-id", "sensor-2"]);
    assert_eq!(shown["status"], "assigned");
    dps.cli(&[
        "enrollment-group",
        "registration",
        "delete",
        "--rid",
        "sensor-2",
    ]);
    let after = dps.json(&["enrollment-group", "registration", "list", "--gid", "fleet"]);
    assert_eq!(after.as_array().unwrap().len(), 2);
    dps.fails(&["registration", "show", "--rid", "sensor-2"]);

    // show --keys, update (the keys stay), delete.
    let shown = dps.json(&["enrollment-group", "show", "--gid", "fleet", "--keys"]);
    assert_eq!(
        str_of(&shown, "/attestation/symmetricKey/primaryKey"),
        group_key
    );
    let updated = dps.json(&[
        "enrollment-group",
        "update",
        "--gid",
        "fleet",
        "--tags",
        r#"{"fleet": "north"}"#,
        "--ap",
        "static",
        "--ih",
        "127.0.0.1",
    ]);
    assert_eq!(updated["allocationPolicy"], "static");
    assert_eq!(updated["initialTwin"]["tags"], json!({"fleet": "north"}));
    assert_eq!(
        str_of(&updated, "/attestation/symmetricKey/primaryKey"),
        group_key
    );
    dps.cli(&["enrollment-group", "delete", "--gid", "fleet"]);
    assert_eq!(dps.json(&["enrollment-group", "list"]), json!([]));
    dps.server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lists_follow_continuation_tokens_across_pages() {
    let dps = dps().await;
    // More than the service's default page (100), so a list needs two pages.
    for n in 0..105 {
        let id = format!("e-{n:03}");
        let e: IndividualEnrollment = serde_json::from_value(json!({
            "registrationId": id,
            "attestation": {"type": "symmetricKey", "symmetricKey": {}},
        }))
        .unwrap();
        dps.server.dps.create_or_update(&id, e, None).await.unwrap();
    }
    let all = dps.json(&["enrollment", "list"]);
    let ids: Vec<&str> = all
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["registrationId"].as_str().unwrap())
        .collect();
    assert_eq!(ids.len(), 105);
    assert_eq!(ids[0], "e-000");
    assert_eq!(ids[104], "e-104");
    let top = dps.json(&["enrollment", "list", "--top", "101"]);
    assert_eq!(top.as_array().unwrap().len(), 101);
    assert_eq!(top[100]["registrationId"], "e-100");
    dps.server.shutdown().await;
}

fn ca(cn: &str) -> (rcgen::Certificate, rcgen::Issuer<'static, rcgen::KeyPair>) {
    let key = rcgen::KeyPair::generate().unwrap();
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, cn);
    params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let cert = params.self_signed(&key).unwrap();
    (cert, rcgen::Issuer::new(params, key))
}

fn signed(cn: &str, issuer: &rcgen::Issuer<'static, rcgen::KeyPair>) -> rcgen::Certificate {
    let key = rcgen::KeyPair::generate().unwrap();
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, cn);
    params.signed_by(&key, issuer).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn certificates_with_proof_of_possession_and_x509_groups() {
    let dps = dps().await;
    let files = tempfile::tempdir().unwrap();
    let path = |name: &str| files.path().join(name).to_str().unwrap().to_owned();
    let (root, root_issuer) = ca("Fleet Root");
    std::fs::write(path("root.pem"), root.pem()).unwrap();

    let created = dps.json(&[
        "certificate",
        "create",
        "--dps-name",
        "mydps",
        "-n",
        "fleet-root",
        "-p",
        &path("root.pem"),
    ]);
    assert_eq!(created["name"], "fleet-root");
    assert_eq!(
        created["type"],
        "Microsoft.Devices/ProvisioningServices/Certificates"
    );
    assert_eq!(created["properties"]["isVerified"], false);
    assert_eq!(created["properties"]["subject"], "CN=Fleet Root");
    let err = dps.fails(&[
        "certificate",
        "create",
        "-n",
        "fleet-root",
        "-p",
        &path("root.pem"),
    ]);
    assert!(err.contains("409"), "{err}");
    let list = dps.json(&["certificate", "list"]);
    assert_eq!(list["value"][0]["name"], "fleet-root");
    // The hub's CA certificates are another set.
    let hub_list = std::process::Command::new(env!("CARGO_BIN_EXE_ironhub"))
        .args(["hub", "certificate", "list", "--data-dir"])
        .arg(dps.dir.path())
        .output()
        .unwrap();
    assert!(hub_list.status.success(), "{}", stderr(&hub_list));
    let hub_list: Value = serde_json::from_slice(&hub_list.stdout).unwrap();
    assert_eq!(hub_list, json!({"value": []}));

    let coded = dps.json(&[
        "certificate",
        "generate-verification-code",
        "--certificate-name",
        "fleet-root",
        "-e",
        str_of(&created, "/etag"),
    ]);
    let code = str_of(&coded, "/properties/verificationCode").to_owned();
    let (_, other_issuer) = ca("Someone Else");
    std::fs::write(path("forged.pem"), signed(&code, &other_issuer).pem()).unwrap();
    let err = dps.fails(&[
        "certificate",
        "verify",
        "-n",
        "fleet-root",
        "-p",
        &path("forged.pem"),
    ]);
    assert!(err.contains("400"), "{err}");
    std::fs::write(path("proof.pem"), signed(&code, &root_issuer).pem()).unwrap();
    let stale = dps.fails(&[
        "certificate",
        "verify",
        "-n",
        "fleet-root",
        "-p",
        &path("proof.pem"),
        "-e",
        str_of(&created, "/etag"),
    ]);
    assert!(stale.contains("412"), "{stale}");
    let verified = dps.json(&[
        "certificate",
        "verify",
        "-n",
        "fleet-root",
        "-p",
        &path("proof.pem"),
        "--etag",
        str_of(&coded, "/etag"),
    ]);
    assert_eq!(verified["properties"]["isVerified"], true);
    assert_eq!(
        dps.json(&["certificate", "show", "-n", "fleet-root"])["properties"]["isVerified"],
        true
    );

    // An X.509 group refers to the CA by name, or carries its signing certificate.
    let group = dps.json(&[
        "enrollment-group",
        "create",
        "--gid",
        "x509-fleet",
        "--cn",
        "fleet-root",
    ]);
    assert_eq!(
        group["attestation"],
        json!({"type": "x509", "x509": {"caReferences": {"primary": "fleet-root"}}})
    );
    let signing = dps.json(&[
        "enrollment-group",
        "create",
        "--gid",
        "x509-signing",
        "--cp",
        &path("root.pem"),
    ]);
    assert_eq!(
        signing["attestation"]["x509"]["signingCertificates"]["primary"]["info"]["subjectName"],
        "CN=Fleet Root"
    );
    let err = dps.fails(&[
        "enrollment-group",
        "compute-device-key",
        "--gid",
        "x509-fleet",
        "--rid",
        "d1",
    ]);
    assert!(err.contains("attests by 'x509'"), "{err}");
    let err = dps.fails(&[
        "enrollment-group",
        "update",
        "--gid",
        "x509-fleet",
        "--pk",
        KEY1,
    ]);
    assert!(err.contains("--primary-key"), "{err}");
    let updated = dps.json(&[
        "enrollment-group",
        "update",
        "--gid",
        "x509-fleet",
        "--scn",
        "fleet-root",
    ]);
    assert_eq!(
        updated["attestation"]["x509"]["caReferences"],
        json!({"primary": "fleet-root", "secondary": "fleet-root"})
    );

    // An individual X.509 enrollment: the device's own certificate, CN = registration id.
    let device = signed("x509-dev", &root_issuer);
    std::fs::write(path("device.pem"), device.pem()).unwrap();
    let x509 = dps.json(&[
        "enrollment",
        "create",
        "--eid",
        "x509-dev",
        "--at",
        "x509",
        "--cp",
        &path("device.pem"),
    ]);
    assert_eq!(
        x509["attestation"]["x509"]["clientCertificates"]["primary"]["info"]["subjectName"],
        "CN=x509-dev"
    );
    // An update that names no certificate keeps it.
    let updated = dps.json(&[
        "enrollment",
        "update",
        "--eid",
        "x509-dev",
        "--ps",
        "disabled",
    ]);
    assert_eq!(
        updated["attestation"]["x509"]["clientCertificates"]["primary"]["info"]["subjectName"],
        "CN=x509-dev"
    );
    let err = dps.fails(&[
        "enrollment",
        "create",
        "--eid",
        "x2",
        "--at",
        "x509",
        "--cp",
        &path("missing.pem"),
    ]);
    assert!(err.contains("cannot read the certificate file"), "{err}");

    let err = dps.fails(&["certificate", "delete", "-n", "fleet-root", "-e", "stale"]);
    assert!(err.contains("412"), "{err}");
    let out = dps.cli(&["certificate", "delete", "-n", "fleet-root"]);
    assert!(out.stdout.is_empty());
    assert_eq!(dps.json(&["certificate", "list"]), json!({"value": []}));
    dps.server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn linked_hubs_with_masked_keys() {
    let dps = dps().await;
    let port = dps.server.https_addr.port();
    let own = dps.json(&["linked-hub", "list"]);
    assert_eq!(own.as_array().unwrap().len(), 1);
    assert_eq!(own[0]["name"], "127.0.0.1");
    assert_eq!(
        own[0]["connectionString"],
        format!("HostName=127.0.0.1:{port};SharedAccessKeyName=iothubowner;SharedAccessKey=****")
    );

    let key = "b3RoZXJodWJrZXlvdGhlcmh1YmtleW90aGVyaHViaw==";
    let cs =
        format!("HostName=hub2.example:8443;SharedAccessKeyName=iothubowner;SharedAccessKey={key}");
    let out = dps.cli(&[
        "linked-hub",
        "create",
        "--connection-string",
        &cs,
        "--allocation-weight",
        "3",
        "--apply-allocation-policy",
        "false",
        "--location",
        "lab",
    ]);
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(!text.contains(key), "the key is never shown: {text}");
    let linked: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(linked["name"], "hub2.example");
    assert_eq!(linked["allocationWeight"], 3);
    assert_eq!(linked["applyAllocationPolicy"], false);
    assert_eq!(linked["location"], "lab");
    let err = dps.fails(&["linked-hub", "create", "--cs", &cs]);
    assert!(err.contains("409"), "{err}");

    // An update changes what it names; the rest, the connection string included, stays.
    let updated = dps.json(&[
        "linked-hub",
        "update",
        "--linked-hub",
        "hub2.example",
        "--apply-allocation-policy",
    ]);
    assert_eq!(updated["applyAllocationPolicy"], true);
    assert_eq!(updated["allocationWeight"], 3);
    assert_eq!(updated["location"], "lab");
    assert_eq!(updated["connectionString"], linked["connectionString"]);
    let err = dps.fails(&[
        "linked-hub",
        "update",
        "--linked-hub",
        "hub2.example",
        "--cs",
        &format!("HostName=hub3.example;SharedAccessKeyName=iothubowner;SharedAccessKey={key}"),
    ]);
    assert!(err.contains("not for the linked hub"), "{err}");

    // Enrollments may name it now.
    let e = dps.json(&[
        "enrollment",
        "create",
        "--eid",
        "static-dev",
        "--at",
        "symmetricKey",
        "--ap",
        "static",
        "--ih",
        "hub2.example",
    ]);
    assert_eq!(e["iotHubs"], json!(["hub2.example"]));
    let shown = dps.json(&["linked-hub", "show", "--linked-hub", "hub2.example"]);
    assert_eq!(shown["etag"], updated["etag"]);
    let table = String::from_utf8(dps.cli(&["linked-hub", "list", "-o", "table"]).stdout).unwrap();
    assert_eq!(table.lines().count(), 4, "{table}");

    dps.cli(&["linked-hub", "delete", "--linked-hub", "hub2.example"]);
    let err = dps.fails(&["linked-hub", "show", "--linked-hub", "hub2.example"]);
    assert!(err.contains("not linked"), "{err}");
    let err = dps.fails(&[
        "enrollment",
        "create",
        "--eid",
        "static-2",
        "--at",
        "symmetricKey",
        "--hn",
        "hub2.example",
    ]);
    assert!(err.contains("not linked"), "{err}");
    dps.server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connection_strings_and_logins() {
    let dps = dps().await;
    let login = dps.dps_login();
    let ca = dps.server.ca_certificate.clone();
    let ca_arg = ca.to_str().unwrap();

    let shown = dps.json(&["connection-string", "show"]);
    assert_eq!(shown, json!({"connectionString": login}));
    let policy = &dps.server.dps.settings().policies[0];
    let secondary = dps.json(&["connection-string", "show", "--kt", "secondary"]);
    let cs = ConnectionString::parse(str_of(&secondary, "/connectionString")).unwrap();
    assert_eq!(
        cs.shared_access_key.as_deref(),
        Some(policy.secondary_key.as_str())
    );
    assert_eq!(
        cs.shared_access_key_name.as_deref(),
        Some("provisioningserviceowner")
    );
    let all = dps.json(&["connection-string", "show", "--all"]);
    assert_eq!(all, json!({"connectionString": [login]}));
    let err = dps.fails(&["connection-string", "show", "--pn", "nosuch"]);
    assert!(err.contains("no shared access policy 'nosuch'"), "{err}");

    // --login and --cafile, or their environment variables.
    let out = run(&["enrollment", "list", "-l", &login], &[]);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(err.starts_with("error: certificate not trusted"), "{err}");
    let out = run(
        &[
            "enrollment",
            "list",
            "-l",
            &login,
            "--cafile",
            ca_arg,
            "-n",
            "anything",
        ],
        &[],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let out = run(
        &["enrollment-group", "list", "-g", "my-rg"],
        &[
            ("IRONHUB_DPS_CONNECTION_STRING", login.as_ref()),
            ("SSL_CERT_FILE", ca.as_os_str()),
        ],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(String::from_utf8(out.stdout).unwrap(), "[]\n");
    let out = run(&["connection-string", "show", "-l", &login], &[]);
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["connectionString"], login.as_str());

    // The hub's connection string is not a DPS login, and the error says so.
    let hub_login = str_of(&dps.info(), "/hub/connectionString").to_owned();
    let out = run(
        &[
            "enrollment",
            "list",
            "--login",
            &hub_login,
            "--cafile",
            ca_arg,
        ],
        &[],
    );
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(err.contains("dps.serviceConnectionString"), "{err}");
    let out = run(
        &[
            "enrollment",
            "list",
            "--login",
            "HostName=h;DeviceId=d;SharedAccessKey=a2V5",
        ],
        &[],
    );
    assert!(stderr(&out).contains("device connection string"));

    let out = run(&["enrollment", "list"], &[]);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(err.contains("IRONHUB_DPS_CONNECTION_STRING"), "{err}");
    dps.server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_flags_are_refused_before_anything_is_written() {
    let dps = dps().await;
    for (args, says) in [
        (
            &["enrollment", "create", "--eid", "a", "--at", "x509"][..],
            "--certificate-path",
        ),
        (
            &["enrollment", "create", "--eid", "a", "--at", "tpm"][..],
            "--endorsement-key",
        ),
        (
            &[
                "enrollment",
                "create",
                "--eid",
                "a",
                "--at",
                "symmetricKey",
                "--ap",
                "custom",
                "--wh",
                "https://hook.example/api",
            ][..],
            "--api-version",
        ),
        (
            &[
                "enrollment",
                "create",
                "--eid",
                "a",
                "--at",
                "symmetricKey",
                "--ih",
                "127.0.0.1",
            ][..],
            "--iot-hubs needs --allocation-policy",
        ),
        (
            &[
                "enrollment-group",
                "create",
                "--gid",
                "g",
                "--tags",
                "not json",
            ][..],
            "--initial-twin-tags is not JSON",
        ),
        (
            &["enrollment-group", "compute-device-key", "--rid", "d1"][..],
            "--symmetric-key",
        ),
    ] {
        let err = dps.fails(args);
        assert!(err.contains(says), "{args:?}: {err}");
    }
    // A usage error is clap's exit code 2.
    let out = dps.run(&["enrollment", "create", "--eid", "a", "--at", "password"]);
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(dps.json(&["enrollment", "list"]), json!([]));
    assert_eq!(dps.json(&["enrollment-group", "list"]), json!([]));
    dps.server.shutdown().await;
}
