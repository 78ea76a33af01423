"""What the Azure CLI and the SDKs' own test suites used to trip on (issue 17, items 1–4), with
the real clients: key regeneration (`POST /devices/keys/regenerate`, `ironhub hub
device-identity renew-key`), the DPS queries whatever their text (the Azure CLI's wrapped one
included) page by page, twins with an etag from creation and `desired: null`/`tags: null`
clearing, parent and child devices (`deviceScope`, `parentScopes`, `children`/`parent`),
X.509 v1 device certificates (thumbprint and CA authentication on 8883 and 443, and DPS), and
DPS static allocation without a named hub.

The Node.js scenarios (`node/hub.js`, `node/dps.js`) follow Microsoft's own end-to-end suite of
the Node SDK; X.509 v1 certificates are made with `openssl x509 -req` without extensions.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import uuid
from pathlib import Path

import pytest
import requests
from azure.iot.device import IoTHubDeviceClient, Message, ProvisioningDeviceClient, X509
from azure.iot.device.exceptions import CredentialError
from azure.iot.deviceprovisioning import DeviceProvisioningClient

from conftest import ironhub_bin, require_tool
from dps_helpers import (
    derive, dps_info, dps_rest, make_root, new_key, openssl, sha1_thumbprint, stored_events,
    upload_verified_ca, wait_for,
)

IRONHUB_ADDRESS = "127.0.0.40"

NODE_DIR = Path(__file__).resolve().parent / "node"
NODE_TIMEOUT_S = 60
CLI_TIMEOUT_S = 30
API = "api-version=2021-04-12"


# -- helpers -----------------------------------------------------------------------------------


def cli(hub, *args: str, ok: bool = True):
    """`ironhub <args> --data-dir …`: the parsed JSON output (None when it printed nothing), or
    with `ok=False` the failed process."""
    proc = subprocess.run([ironhub_bin(), *args, "--data-dir", str(hub.data_dir)], capture_output=True,
                          text=True, timeout=CLI_TIMEOUT_S, stdin=subprocess.DEVNULL)
    if not ok:
        assert proc.returncode not in (0, 2), f"`{' '.join(args)}` should have failed:\n{proc.stdout}{proc.stderr}"
        assert proc.stderr.strip(), "a failure says why"
        return proc
    assert proc.returncode == 0, f"`{' '.join(args)}` exited {proc.returncode}:\n{proc.stdout}\n{proc.stderr}"
    return json.loads(proc.stdout) if proc.stdout.strip() else None


def owner_sas(hub) -> str:
    return cli(hub, "hub", "generate-sas-token")["sas"]


def rest(hub, method: str, path: str, body=None) -> requests.Response:
    return requests.request(method, f"https://{hub.address}{path}?{API}", json=body, timeout=CLI_TIMEOUT_S,
                            headers={"Authorization": owner_sas(hub)}, verify=hub.ca_file)


def ca_pem(hub) -> str:
    return Path(hub.ca_file).read_text()


def key_client(hub, device_id: str, key: str) -> IoTHubDeviceClient:
    return IoTHubDeviceClient.create_from_connection_string(
        f"HostName={hub.hostname};DeviceId={device_id};SharedAccessKey={key}",
        server_verification_cert=ca_pem(hub), connection_retry=False)


def sends(client: IoTHubDeviceClient, hub, device_id: str, text: str) -> None:
    try:
        client.connect()
        client.send_message(Message(text))
    finally:
        client.shutdown()
    wait_for(lambda: text in [e["body"] for e in stored_events(hub, device_id)], what=f"{device_id}'s telemetry")


def node(hub, script: str, *args: str, env_extra: dict | None = None) -> dict:
    """`node <script> <args>` trusting the server's CA; the JSON it printed (it must succeed)."""
    if shutil.which("node") is None or not (NODE_DIR / "node_modules" / "azure-iothub").is_dir():
        pytest.fail("node and the Node SDKs are needed: run the suite through scripts/test", pytrace=False)
    env = {k: v for k, v in os.environ.items() if k != "DEBUG"}
    env["NODE_EXTRA_CA_CERTS"] = hub.ca_file
    env["IRONHUB_CONNECTION_STRING"] = hub.connection_string
    env["IRONHUB_DPS_CONNECTION_STRING"] = dps_info(hub)["serviceConnectionString"]
    env.update(env_extra or {})
    proc = subprocess.run(["node", script, *args], cwd=NODE_DIR, env=env, capture_output=True, text=True,
                          timeout=NODE_TIMEOUT_S, stdin=subprocess.DEVNULL)
    lines = [line for line in proc.stdout.splitlines() if line.strip()]
    out = json.loads(lines[-1]) if lines else {}
    assert proc.returncode == 0 and "error" not in out, (
        f"`node {script} {' '.join(args[:1])}` failed (exit {proc.returncode}): {proc.stdout}\n{proc.stderr}")
    return out


def make_v1(tmp: Path, name: str, cn: str, issuer: str | None = None) -> None:
    """An X.509 v1 certificate `{name}.pem`/`{name}.key` with CN `cn`: `openssl x509 -req`
    without `-extfile` writes no extensions, hence version 1. Self-signed, or signed by
    `{issuer}.pem`/`.key`."""
    openssl("req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
            "-keyout", f"{name}.key", "-out", f"{name}.csr", "-subj", f"/CN={cn}", cwd=tmp)
    sign = ["-signkey", f"{name}.key"] if issuer is None else [
        "-CA", f"{issuer}.pem", "-CAkey", f"{issuer}.key", "-CAcreateserial"]
    openssl("x509", "-req", "-in", f"{name}.csr", *sign, "-days", "2", "-out", f"{name}.pem", cwd=tmp)
    text = subprocess.run(["openssl", "x509", "-in", str(tmp / f"{name}.pem"), "-noout", "-text"],
                          check=True, capture_output=True, text=True).stdout
    assert "Version: 1 (0x0)" in text, "the test needs a v1 certificate"


# -- 1. key regeneration -----------------------------------------------------------------------


def test_renew_key_with_the_cli_and_the_rest_api(hub, rm):
    keys = {}
    for d in ("rk-1", "rk-2", "rk-3"):
        created = rm.create_device_with_sas(d, None, None, "enabled")
        keys[d] = (created.authentication.symmetric_key.primary_key, created.authentication.symmetric_key.secondary_key)
    rm.create_device_with_x509("rk-x509", "AB" * 20, None, "enabled")

    # One device: az prints the device as it now is.
    shown = cli(hub, "hub", "device-identity", "renew-key", "-d", "rk-1", "--kt", "primary")
    assert shown["deviceId"] == "rk-1"
    new_primary = shown["authentication"]["symmetricKey"]["primaryKey"]
    assert new_primary != keys["rk-1"][0]
    assert shown["authentication"]["symmetricKey"]["secondaryKey"] == keys["rk-1"][1]
    # The old key no longer connects; the new one does.
    stale = key_client(hub, "rk-1", keys["rk-1"][0])
    with pytest.raises(CredentialError):
        stale.connect()
    stale.shutdown()
    sends(key_client(hub, "rk-1", new_primary), hub, "rk-1", "renewed rk-1")

    # Several devices: the combined result, as az prints it.
    both = cli(hub, "hub", "device-identity", "renew-key", "-d", "rk-2", "rk-3", "--key-type", "both")
    assert both["policyKey"] == "both" and both["errors"] == []
    rotated = {r["id"]: r for r in both["rotatedKeys"]}
    assert set(rotated) == {"rk-2", "rk-3"}
    for d in ("rk-2", "rk-3"):
        stored = rm.get_device(d).authentication.symmetric_key
        assert (stored.primary_key, stored.secondary_key) == (rotated[d]["primaryKey"], rotated[d]["secondaryKey"])
        assert stored.primary_key != keys[d][0] and stored.secondary_key != keys[d][1]

    # `*`: every device with symmetric keys, and only those.
    everyone = cli(hub, "hub", "device-identity", "renew-key", "-d", "*", "--kt", "secondary")
    ids = {r["id"] for r in everyone["rotatedKeys"]}
    assert {"rk-1", "rk-2", "rk-3"} <= ids and "rk-x509" not in ids

    # swap exchanges the keys of one device.
    before = rm.get_device("rk-2").authentication.symmetric_key
    swapped = cli(hub, "hub", "device-identity", "renew-key", "-d", "rk-2", "--kt", "swap")
    assert swapped["authentication"]["symmetricKey"] == {"primaryKey": before.secondary_key,
                                                         "secondaryKey": before.primary_key}
    cli(hub, "hub", "device-identity", "renew-key", "-d", "rk-2", "rk-3", "--kt", "swap", ok=False)
    failed = cli(hub, "hub", "device-identity", "renew-key", "-d", "rk-x509", "--kt", "primary", ok=False)
    assert "symmetric keys" in failed.stderr

    # The REST call az makes: 207 for a partial success, 400 when nothing was rotated or the
    # request is malformed, and nothing changes for the devices that failed.
    r = rest(hub, "POST", "/devices/keys/regenerate",
             {"policyKey": "primaryKey", "devices": [{"id": "rk-3"}, {"id": "rk-none"}]})
    assert r.status_code == 207, r.text
    assert [e["id"] for e in r.json()["errors"]] == ["rk-none"]
    assert r.json()["errors"][0]["errorCode"] == "DeviceNotFound"
    assert r.json()["rotatedKeys"][0]["primaryKey"] == rm.get_device("rk-3").authentication.symmetric_key.primary_key
    r = rest(hub, "POST", "/devices/keys/regenerate", {"policyKey": "both", "devices": [{"id": "rk-none"}]})
    assert r.status_code == 400 and r.json()["rotatedKeys"] == [], r.text
    etag = rm.get_device("rk-1").etag
    r = rest(hub, "POST", "/devices/keys/regenerate", {"policyKey": "swap", "devices": [{"id": "rk-1"}]})
    assert r.status_code == 400 and r.headers["iothub-errorcode"] == "ArgumentInvalid", r.text
    assert rm.get_device("rk-1").etag == etag


# -- 2. DPS queries ----------------------------------------------------------------------------

# What `az iot dps enrollment list` sends as the query text (its QuerySpecification wrapped in
# another one, serialised as the inner object's Python repr).
AZ_QUERY = "{'additional_properties': {}, 'query': 'SELECT *'}"


def test_dps_queries_answer_every_record_whatever_the_text_page_by_page(hub):
    dps = DeviceProvisioningClient.from_connection_string(
        dps_info(hub)["serviceConnectionString"], connection_verify=hub.ca_file)
    for i in range(5):
        dps.enrollment.create_or_update(id=f"q-{i}", enrollment={
            "registrationId": f"q-{i}", "attestation": {"type": "symmetricKey", "symmetricKey": {}}})
    for i in range(3):
        dps.enrollment_group.create_or_update(id=f"qg-{i}", enrollment_group={
            "enrollmentGroupId": f"qg-{i}", "attestation": {"type": "symmetricKey", "symmetricKey": {}}})

    for text in (AZ_QUERY, "SELECT *", "SELECT * FROM enrollments WHERE registrationId = 'q-1'"):
        pages = [[e["registrationId"] for e in page]
                 for page in dps.enrollment.query(query_specification={"query": text}, top=2).by_page()]
        assert all(len(p) <= 2 for p in pages), pages
        assert [r for p in pages for r in p] == [f"q-{i}" for i in range(5)], text
        groups = [g["enrollmentGroupId"]
                  for g in dps.enrollment_group.query(query_specification={"query": text}, top=1)]
        assert groups == [f"qg-{i}" for i in range(3)], text

    # The body exactly as the Azure CLI sends it, with its paging headers.
    seen, token = [], None
    while True:
        headers = {"x-ms-max-item-count": "2", **({"x-ms-continuation": token} if token else {})}
        r = dps_rest(hub, "POST", "/enrollments/query", {"query": AZ_QUERY}, headers=headers)
        assert r.status_code == 200, r.text
        seen += [e["registrationId"] for e in r.json()]
        token = r.headers.get("x-ms-continuation")
        if not token:
            break
    assert seen == [f"q-{i}" for i in range(5)]

    # ironhub's own CLI lists them all, and --top cuts the list.
    listed = cli(hub, "dps", "enrollment", "list")
    assert [e["registrationId"] for e in listed] == [f"q-{i}" for i in range(5)]
    assert len(cli(hub, "dps", "enrollment-group", "list", "--top", "2")) == 2


# -- 3. twins ----------------------------------------------------------------------------------


def test_a_new_twin_has_an_etag_the_sdks_can_send_back(hub, rm):
    rm.create_device_with_sas("etag-py", None, None, "enabled")
    twin = rm.get_twin("etag-py")
    assert twin.etag, "a twin has an etag from its device's creation"
    updated = rm.update_twin("etag-py", {"properties": {"desired": {"x": 1}}}, twin.etag)
    assert updated.properties.desired["x"] == 1 and updated.etag != twin.etag
    r = rest(hub, "GET", "/twins/etag-py")
    assert r.headers["ETag"] == f'"{r.json()["etag"]}"'

    # Node: Registry.getTwin then updateTwin with the etag it got (twin_e2e_tests.js).
    rm.create_device_with_sas("etag-node", None, None, "enabled")
    out = node(hub, "hub.js", "twin-etag", "--device-id", "etag-node")
    assert out["firstEtag"] and out["updatedEtag"] != out["firstEtag"]
    assert out["telemetryInterval"] == 100
    assert out["wrongEtagError"]["statusCode"] == 412


def test_null_desired_and_tags_clear_them_and_the_device_is_told(hub, rm):
    key = rm.create_device_with_sas("twin-null", None, None, "enabled").authentication.symmetric_key.primary_key
    out = node(hub, "hub.js", "twin-null", "--device-id", "twin-null", "--key", key)
    v0 = out["initialVersion"]
    versions = [s["version"] for s in out["seen"]]
    assert v0 + 1 in versions and v0 + 2 in versions, versions
    assert {k: v for k, v in out["deviceDesired"].items() if not k.startswith("$")} == {}, out
    assert {k: v for k, v in out["serviceDesiredAfterClear"].items() if not k.startswith("$")} == {}
    assert out["desiredVersion"] == v0 + 2, "clearing is one more version"
    assert out["tags"] == {}, out

    # The Python service SDK sees the same twin.
    twin = rm.get_twin("twin-null")
    assert twin.tags in (None, {})
    assert {k for k in twin.properties.desired if not k.startswith("$")} == set()


# -- 3. parent and child devices ---------------------------------------------------------------


def test_scoped_and_nested_devices_as_the_node_suite_makes_them(hub):
    out = node(hub, "hub.js", "scopes", "--prefix", "sc")
    edge = out["edgeScope"]
    assert edge.startswith("ms-azure-iot-edge://sc-edge-")
    assert out["scoped"] == {"deviceScope": edge, "parentScopes": [edge]}
    assert out["randomScopeUpdate"].get("statusCode") == 400, out["randomScopeUpdate"]
    assert out["scopedAfter"] == edge, "the refused update changed nothing"
    nested = out["nested"]
    assert nested["child"]["parentScopes"] == [nested["rootScope"]]
    assert nested["child"]["deviceScope"] != nested["rootScope"], "an Edge device has its own scope"
    assert nested["leaf"] == {"deviceScope": nested["child"]["deviceScope"],
                              "parentScopes": [nested["child"]["deviceScope"]]}


def test_children_and_parent_commands(hub, rm):
    for d in ("gw-1", "gw-2"):
        cli(hub, "hub", "device-identity", "create", "-d", d, "--ee")
    for d in ("leaf-1", "leaf-2", "leaf-3"):
        cli(hub, "hub", "device-identity", "create", "-d", d)
    cli(hub, "hub", "device-identity", "create", "-d", "gw-child", "--ee")
    gw1 = rm.get_device("gw-1")

    assert cli(hub, "hub", "device-identity", "children", "add", "-d", "gw-1",
               "--child-list", "leaf-1", "leaf-2", "gw-child") is None
    leaf = rm.get_device("leaf-1")
    assert leaf.device_scope == gw1.device_scope and leaf.parent_scopes == [gw1.device_scope]
    child_edge = rm.get_device("gw-child")
    assert child_edge.parent_scopes == [gw1.device_scope], "an Edge child names its parent in parentScopes"
    assert child_edge.device_scope != gw1.device_scope
    assert sorted(cli(hub, "hub", "device-identity", "children", "list", "-d", "gw-1")) == ["gw-child", "leaf-1", "leaf-2"]
    assert cli(hub, "hub", "device-identity", "parent", "show", "-d", "leaf-2")["deviceId"] == "gw-1"

    # A second parent needs --force; parent set moves the device.
    cli(hub, "hub", "device-identity", "parent", "set", "-d", "leaf-2", "--pd", "gw-2", ok=False)
    cli(hub, "hub", "device-identity", "parent", "set", "-d", "leaf-2", "--pd", "gw-2", "--force")
    assert cli(hub, "hub", "device-identity", "parent", "show", "-d", "leaf-2")["deviceId"] == "gw-2"
    # Only an Edge device can be a parent.
    cli(hub, "hub", "device-identity", "parent", "set", "-d", "leaf-3", "--pd", "leaf-1", ok=False)

    # children remove: a device that is not the edge's child is refused; --remove-all empties it.
    cli(hub, "hub", "device-identity", "children", "remove", "-d", "gw-1", "--cl", "leaf-2", ok=False)
    cli(hub, "hub", "device-identity", "children", "remove", "-d", "gw-1", "--cl", "leaf-1")
    assert rm.get_device("leaf-1").parent_scopes in (None, [])
    cli(hub, "hub", "device-identity", "parent", "show", "-d", "leaf-1", ok=False)
    cli(hub, "hub", "device-identity", "children", "remove", "-d", "gw-1", "--remove-all")
    assert cli(hub, "hub", "device-identity", "children", "list", "-d", "gw-1") == []
    assert rm.get_device("gw-child").parent_scopes in (None, [])

    # What IoT Hub refuses, with the Python SDK: a scope that names no Edge device.
    from azure.iot.hub.protocol.models import Device
    from msrest.exceptions import HttpOperationError

    stray = Device(device_id="stray", device_scope=f"ms-azure-iot-edge://leaf-3-{uuid.uuid4().int % 10**18}")
    with pytest.raises(HttpOperationError) as refused:
        rm.protocol.devices.create_or_update_identity("stray", stray)
    assert refused.value.response.status_code == 400
    with pytest.raises(HttpOperationError):
        rm.get_device("stray")


# -- 4. X.509 v1 device certificates -----------------------------------------------------------


@pytest.fixture(scope="module")
def hub_ca(hub, tmp_path_factory):
    """A root CA verified by the hub (proof of possession with ironhub's CLI)."""
    require_tool("openssl")
    tmp = tmp_path_factory.mktemp("hub-ca")
    make_root(tmp, "root", "Gaps Root CA")
    cli(hub, "hub", "certificate", "create", "--name", "gaps-root", "--path", str(tmp / "root.pem"))
    code = cli(hub, "hub", "certificate", "generate-verification-code", "--name", "gaps-root")["properties"]["verificationCode"]
    make_v1(tmp, "proof", code, issuer="root")
    cli(hub, "hub", "certificate", "verify", "--name", "gaps-root", "--path", str(tmp / "proof.pem"))
    return tmp


@pytest.mark.parametrize("websockets", [False, True], ids=["mqtt-8883", "websocket-443"])
def test_v1_certificates_authenticate_by_thumbprint_and_by_ca(hub, rm, hub_ca, tmp_path, websockets):
    suffix = "ws" if websockets else "mqtt"
    tp = f"v1-tp-{suffix}"
    make_v1(tmp_path, tp, tp)
    rm.create_device_with_x509(tp, sha1_thumbprint(tmp_path / f"{tp}.pem"), None, "enabled")
    ca = f"v1-ca-{suffix}"
    make_v1(hub_ca, ca, ca, issuer="root")
    rm.create_device_with_certificate_authority(ca, "enabled")
    for device_id, folder in ((tp, tmp_path), (ca, hub_ca)):
        client = IoTHubDeviceClient.create_from_x509_certificate(
            x509=X509(cert_file=str(folder / f"{device_id}.pem"), key_file=str(folder / f"{device_id}.key")),
            hostname=hub.hostname, device_id=device_id, server_verification_cert=ca_pem(hub),
            websockets=websockets, connection_retry=False)
        sends(client, hub, device_id, f"v1 hello from {device_id}")

    # A v1 certificate signed by a CA the hub never verified is refused.
    make_root(tmp_path, "rogue", "Rogue CA")
    rogue = f"v1-rogue-{suffix}"
    make_v1(tmp_path, rogue, rogue, issuer="rogue")
    rm.create_device_with_certificate_authority(rogue, "enabled")
    client = IoTHubDeviceClient.create_from_x509_certificate(
        x509=X509(cert_file=str(tmp_path / f"{rogue}.pem"), key_file=str(tmp_path / f"{rogue}.key")),
        hostname=hub.hostname, device_id=rogue, server_verification_cert=ca_pem(hub),
        websockets=websockets, connection_retry=False)
    with pytest.raises(CredentialError):
        client.connect()
    client.shutdown()


@pytest.mark.parametrize("transport", ["mqtt", "mqttws"], ids=["mqtt-8883", "websocket-443"])
def test_v1_certificates_with_the_node_device_sdk(hub, rm, hub_ca, tmp_path, transport):
    tp, ca = f"node-v1-tp-{transport}", f"node-v1-ca-{transport}"
    make_v1(tmp_path, tp, tp)
    rm.create_device_with_x509(tp, sha1_thumbprint(tmp_path / f"{tp}.pem"), None, "enabled")
    make_v1(hub_ca, ca, ca, issuer="root")
    rm.create_device_with_certificate_authority(ca, "enabled")
    for device_id, folder in ((tp, tmp_path), (ca, hub_ca)):
        text = f"node v1 hello from {device_id}"
        node(hub, "hub.js", "x509", "--hub", hub.hostname, "--device-id", device_id, "--transport", transport,
             "--cert", str(folder / f"{device_id}.pem"), "--key", str(folder / f"{device_id}.key"), "--text", text)
        wait_for(lambda: text in [e["body"] for e in stored_events(hub, device_id)], what=f"{device_id}'s telemetry")


def enroll_own_v1_certificate(hub, tmp: Path, rid: str) -> None:
    """A self-signed v1 certificate `{rid}.pem`/`.key` with CN `rid`, and an individual
    enrollment holding it."""
    make_v1(tmp, rid, rid)
    r = dps_rest(hub, "PUT", f"/enrollments/{rid}", {
        "registrationId": rid,
        "attestation": {"type": "x509", "x509": {"clientCertificates": {
            "primary": {"certificate": (tmp / f"{rid}.pem").read_text()}}}}})
    assert r.status_code == 200, r.text


@pytest.mark.parametrize("websockets", [False, True], ids=["mqtt-8883", "websocket-443"])
def test_v1_certificates_provision_through_dps(hub, tmp_path, websockets):
    require_tool("openssl")
    scope = dps_info(hub)["idScope"]
    suffix = "ws" if websockets else "mqtt"

    def register(rid: str, cert: Path, key: Path):
        return ProvisioningDeviceClient.create_from_x509_certificate(
            provisioning_host=hub.address, registration_id=rid, id_scope=scope,
            x509=X509(cert_file=str(cert), key_file=str(key)), server_verification_cert=ca_pem(hub),
            websockets=websockets,
        ).register()

    # An individual enrollment holding the device's own v1 certificate.
    ind = f"dps-v1-ind-{suffix}"
    enroll_own_v1_certificate(hub, tmp_path, ind)
    result = register(ind, tmp_path / f"{ind}.pem", tmp_path / f"{ind}.key")
    assert result.status == "assigned"
    assert hub.registry_manager().get_device(ind).authentication.x509_thumbprint.primary_thumbprint == \
        sha1_thumbprint(tmp_path / f"{ind}.pem")

    # A group on a verified root, and a v1 device certificate the root signed.
    make_root(tmp_path, "dps-root", "DPS Gaps Root")
    upload_verified_ca(hub, f"dps-gaps-root-{suffix}", tmp_path, "dps-root")
    group = f"v1-group-{suffix}"
    r = dps_rest(hub, "PUT", f"/enrollmentGroups/{group}", {
        "enrollmentGroupId": group,
        "attestation": {"type": "x509", "x509": {"signingCertificates": {
            "primary": {"certificate": (tmp_path / "dps-root.pem").read_text()}}}}})
    assert r.status_code == 200, r.text
    grp = f"dps-v1-grp-{suffix}"
    make_v1(tmp_path, grp, grp, issuer="dps-root")
    result = register(grp, tmp_path / f"{grp}.pem", tmp_path / f"{grp}.key")
    assert result.status == "assigned"
    client = IoTHubDeviceClient.create_from_x509_certificate(
        x509=X509(cert_file=str(tmp_path / f"{grp}.pem"), key_file=str(tmp_path / f"{grp}.key")),
        hostname=result.registration_state.assigned_hub, device_id=grp,
        server_verification_cert=ca_pem(hub), websockets=websockets)
    sends(client, hub, grp, f"provisioned with a v1 certificate ({suffix})")


@pytest.mark.parametrize("transport", ["mqtt", "mqttws", "http"])
def test_v1_certificates_provision_with_the_node_dps_sdk(hub, tmp_path, transport):
    """`_provisioning_e2e.js` of the Node SDK: an individual enrollment on a self-signed v1
    certificate, registered with azure-iot-security-x509 over each transport (HTTP: the DPS
    device REST API on 443)."""
    rid = f"node-dps-v1-{transport}"
    enroll_own_v1_certificate(hub, tmp_path, rid)
    out = node(hub, "dps.js", "register", "--transport", transport, "--host", hub.address,
               "--scope", dps_info(hub)["idScope"], "--id", rid,
               "--cert", str(tmp_path / f"{rid}.pem"), "--x509-key", str(tmp_path / f"{rid}.key"))
    assert out["registrationState"]["status"] == "assigned", out
    assert out["registrationState"]["deviceId"] == rid


# -- 4. DPS static allocation without a named hub ----------------------------------------------


def test_static_group_without_a_hub_as_the_node_suite_creates_it(hub):
    group_key = new_key()
    group = {
        "enrollmentGroupId": "static-no-hub",
        "attestation": {"type": "symmetricKey", "symmetricKey": {"primaryKey": group_key, "secondaryKey": new_key()}},
        "provisioningStatus": "enabled",
        "capabilities": {"iotEdge": True},
        "reprovisionPolicy": {"updateHubAssignment": False, "migrateDeviceData": True},
        "allocationPolicy": "static",
    }
    created = node(hub, "dps.js", "service", "createOrUpdateEnrollmentGroup", json.dumps(group))
    assert created["result"]["allocationPolicy"] == "static"
    assert not created["result"].get("iotHubHostName")
    fetched = node(hub, "dps.js", "service", "getEnrollmentGroup", json.dumps("static-no-hub"))
    assert fetched["result"]["enrollmentGroupId"] == "static-no-hub"

    # A device of the group goes to the one linked hub.
    rid = "static-dev-1"
    out = node(hub, "dps.js", "register", "--transport", "mqtt", "--host", hub.address,
               "--scope", dps_info(hub)["idScope"], "--id", rid, "--key", derive(group_key, rid))
    assert out["registrationState"]["assignedHub"] == hub.hostname
    assert hub.registry_manager().get_device(rid).capabilities.iot_edge is True

    node(hub, "dps.js", "service", "deleteEnrollmentGroup", json.dumps("static-no-hub"))
