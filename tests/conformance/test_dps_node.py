"""The Device Provisioning Service against the real Node.js SDKs, as a Node user drives them.

`node/dps.js` (run with `node`, trusting the server's CA through `NODE_EXTRA_CA_CERTS`, the way
the SDKs' own documentation says) calls `azure-iot-provisioning-device` with its MQTT, MQTT over
WebSocket and HTTP transports and `azure-iot-security-symmetric-key`, connects each provisioned
device to its assigned hub with `azure-iot-device` + `azure-iot-device-mqtt`, and drives the
service SDK `azure-iot-provisioning-service`'s `ProvisioningServiceClient`. The versions are
pinned in `node/package-lock.json`; `scripts/test` installs them with `npm ci`.

The server's host name here is its loopback address, an IP literal: Node's TLS sends no SNI for
it and checks the certificate's IP SANs instead, which is what a device given an address sees.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import uuid
from pathlib import Path

import pytest
from msrest.exceptions import HttpOperationError

from dps_helpers import derive, dps_info, new_key, stored_events, wait_for

IRONHUB_ADDRESS = "127.0.0.30"

NODE_DIR = Path(__file__).resolve().parent / "node"
SCRIPT = NODE_DIR / "dps.js"
NODE_TIMEOUT_S = 60

TRANSPORTS = ["mqtt", "mqttws", "http"]


# -- running the Node SDKs ---------------------------------------------------------------------


@pytest.fixture(scope="module", autouse=True)
def node_sdks():
    node = shutil.which("node")
    if node is None:
        pytest.fail("`node` is not installed: run the suite through scripts/test", pytrace=False)
    if not (NODE_DIR / "node_modules" / "azure-iot-provisioning-device").is_dir():
        pytest.fail(f"the Node SDKs are not installed in {NODE_DIR}/node_modules: run the suite "
                    "through scripts/test (it runs npm ci)", pytrace=False)
    return node


def run_node(hub, *args: str, trust_ca: bool = True) -> tuple[int, dict, str]:
    """Runs `node dps.js <args>`; returns (exit code, the JSON it printed, its stderr)."""
    env = dict(os.environ)
    env.pop("NODE_EXTRA_CA_CERTS", None)
    if trust_ca:
        env["NODE_EXTRA_CA_CERTS"] = hub.ca_file
    env["IRONHUB_DPS_CONNECTION_STRING"] = dps_info(hub)["serviceConnectionString"]
    env.pop("DEBUG", None)
    proc = subprocess.run(["node", str(SCRIPT), *args], cwd=NODE_DIR, env=env, capture_output=True,
                          text=True, timeout=NODE_TIMEOUT_S, stdin=subprocess.DEVNULL)
    lines = [line for line in proc.stdout.splitlines() if line.strip()]
    try:
        out = json.loads(lines[-1])
    except (IndexError, json.JSONDecodeError):
        raise AssertionError(f"`node dps.js {' '.join(args[:2])}` printed no JSON (exit "
                             f"{proc.returncode})\nstdout:\n{proc.stdout}\nstderr:\n{proc.stderr}")
    return proc.returncode, out, proc.stderr


def node_ok(hub, *args: str) -> dict:
    code, out, stderr = run_node(hub, *args)
    assert code == 0 and "error" not in out, (
        f"`node dps.js {' '.join(args[:2])}` failed: {json.dumps(out, indent=1)}\n{stderr}")
    return out


def node_error(hub, *args: str) -> dict:
    code, out, stderr = run_node(hub, *args)
    assert code == 1 and "error" in out, (
        f"`node dps.js {' '.join(args[:2])}` should have failed: {json.dumps(out)}\n{stderr}")
    return out["error"]


def service(hub, method: str, *args) -> dict:
    """`ProvisioningServiceClient[method](*args, callback)`: {"result", "statusCode"}."""
    return node_ok(hub, "service", method, *(json.dumps(a) for a in args))


def service_error(hub, method: str, *args) -> dict:
    return node_error(hub, "service", method, *(json.dumps(a) for a in args))


def query_pages(hub, factory: str, *args) -> list[dict]:
    out = node_ok(hub, "query", factory, *(json.dumps(a) for a in args))
    assert out["hasMoreResults"] is False
    return out["pages"]


def register_args(hub, transport: str, registration_id: str, key: str, payload=None) -> list[str]:
    args = ["register", "--transport", transport, "--host", hub.address,
            "--scope", dps_info(hub)["idScope"], "--id", registration_id, "--key", key]
    if payload is not None:
        args += ["--payload", json.dumps(payload)]
    return args


def register(hub, transport: str, registration_id: str, key: str, payload=None) -> dict:
    """A device's `ProvisioningDeviceClient.register()`: the registration state it returns."""
    return node_ok(hub, *register_args(hub, transport, registration_id, key, payload))["registrationState"]


def register_error(hub, transport: str, registration_id: str, key: str) -> dict:
    return node_error(hub, *register_args(hub, transport, registration_id, key))


def send_from_assigned_hub(hub, state: dict, key: str, text: str) -> None:
    """The provisioned device connects to the hub DPS assigned (azure-iot-device over MQTT),
    sends one message, and the hub's event log holds it."""
    sent = node_ok(hub, "send", "--hub", state["assignedHub"], "--device-id", state["deviceId"],
                   "--key", key, "--text", text)
    assert sent["result"] == "MessageEnqueued"
    wait_for(lambda: text in [e["body"] for e in stored_events(hub, state["deviceId"])],
             what=f"{state['deviceId']}'s telemetry in the event log")


def symmetric_key(primary: str | None = None, secondary: str | None = None) -> dict:
    keys = {}
    if primary:
        keys = {"primaryKey": primary, "secondaryKey": secondary or new_key()}
    return {"type": "symmetricKey", "symmetricKey": keys}


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def assert_no_hub_device(hub, device_id: str) -> None:
    with pytest.raises(HttpOperationError) as missing:
        hub.registry_manager().get_device(device_id)
    assert missing.value.response.status_code == 404


# -- devices -----------------------------------------------------------------------------------


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_the_server_certificate_is_verified(hub, transport):
    """Without NODE_EXTRA_CA_CERTS the SDK refuses the server (so the tests below pass because
    the certificate verifies against ca.pem, IP SAN included, not because TLS is lax)."""
    code, out, _ = run_node(hub, *register_args(hub, transport, unique("node-tls"), new_key()),
                            trust_ca=False)
    assert code == 1
    assert out["error"]["message"] == "self-signed certificate in certificate chain", out


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_individual_symmetric_key_enrollment(hub, transport):
    rid = unique(f"node-ind-{transport}")
    key = new_key()
    created = service(hub, "createOrUpdateIndividualEnrollment", {
        "registrationId": rid,
        "attestation": symmetric_key(key),
        "initialTwin": {"tags": {"site": "lab"}, "properties": {"desired": {"fw": "1.0"}}},
    })["result"]
    assert created["registrationId"] == rid and created["provisioningStatus"] == "enabled"

    state = register(hub, transport, rid, key, payload={"a": 1})
    assert state["status"] == "assigned"
    assert state["assignedHub"] == hub.hostname
    assert state["deviceId"] == rid
    assert state["substatus"] == "initialAssignment"
    assert state["etag"]

    # The hub has the device, with the enrollment's key and its initial twin.
    rm = hub.registry_manager()
    assert rm.get_device(rid).authentication.symmetric_key.primary_key == key
    twin = rm.get_twin(rid)
    assert twin.tags == {"site": "lab"}
    assert twin.properties.desired["fw"] == "1.0"

    record = service(hub, "getDeviceRegistrationState", rid)["result"]
    assert record["status"] == "assigned" and record["assignedHub"] == hub.hostname

    send_from_assigned_hub(hub, state, key, f"hello from {rid}")


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_group_symmetric_key_enrollment_with_derived_key(hub, transport):
    gid = unique(f"node-group-{transport}")
    service(hub, "createOrUpdateEnrollmentGroup",
            {"enrollmentGroupId": gid, "attestation": symmetric_key()})
    mechanism = service(hub, "getEnrollmentGroupAttestationMechanism", gid)["result"]
    group_key = mechanism["symmetricKey"]["primaryKey"]

    rid = f"{gid}-dev1"
    device_key = derive(group_key, rid)
    state = register(hub, transport, rid, device_key)
    assert state["status"] == "assigned"
    assert state["assignedHub"] == hub.hostname
    assert state["deviceId"] == rid
    assert hub.registry_manager().get_device(rid).authentication.symmetric_key.primary_key == device_key
    send_from_assigned_hub(hub, state, device_key, f"hello from {rid}")

    # The group key itself is no device key.
    refused = register_error(hub, transport, f"{gid}-raw", group_key)
    assert refused["class"] == "UnauthorizedError"
    assert_no_hub_device(hub, f"{gid}-raw")


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_wrong_key_is_unauthorized(hub, transport):
    rid = unique(f"node-wrong-{transport}")
    service(hub, "createOrUpdateIndividualEnrollment",
            {"registrationId": rid, "attestation": symmetric_key(new_key())})
    refused = register_error(hub, transport, rid, new_key())
    assert refused["class"] == "UnauthorizedError", refused
    if transport == "http":
        assert refused["statusCode"] == 401
    else:
        # MQTT: answered on $dps/registrations/res/401 with a DPS error body the SDK parsed.
        assert refused["topic"].startswith("$dps/registrations/res/401/?$rid="), refused
        assert refused["result"]["errorCode"] == 401002
    assert_no_hub_device(hub, rid)
    assert service_error(hub, "getDeviceRegistrationState", rid)["statusCode"] == 404


@pytest.mark.parametrize("transport", ["mqtt", "http"])
@pytest.mark.parametrize("kind", ["individual", "group"])
def test_disabled_enrollment_refuses_the_device(hub, kind, transport):
    name = unique(f"node-off-{kind}-{transport}")
    if kind == "individual":
        rid, key = name, new_key()
        service(hub, "createOrUpdateIndividualEnrollment", {
            "registrationId": rid, "attestation": symmetric_key(key),
            "provisioningStatus": "disabled"})
    else:
        service(hub, "createOrUpdateEnrollmentGroup", {
            "enrollmentGroupId": name, "attestation": symmetric_key(),
            "provisioningStatus": "disabled"})
        group_key = service(hub, "getEnrollmentGroupAttestationMechanism", name)["result"]
        rid = f"{name}-dev1"
        key = derive(group_key["symmetricKey"]["primaryKey"], rid)

    refused = register_error(hub, transport, rid, key)
    # Real DPS answers the poll with 200 and status "disabled"; the Node SDK's polling state
    # machine knows no such status and fails the registration with a SyntaxError.
    assert refused["class"] == "SyntaxError", refused
    assert refused["message"] == "status is disabled"
    assert refused["result"]["status"] == "disabled"
    assert refused["result"]["registrationState"]["registrationId"] == rid
    assert_no_hub_device(hub, rid)
    # As in DPS, the refusal leaves a registration record saying so.
    record = service(hub, "getDeviceRegistrationState", rid)["result"]
    assert record["status"] == "disabled"
    assert "assignedHub" not in record


# -- the service SDK ---------------------------------------------------------------------------


def test_service_individual_enrollments_get_bulk_query_delete(hub):
    rid = unique("node-svc")
    key = new_key()
    created = service(hub, "createOrUpdateIndividualEnrollment",
                      {"registrationId": rid, "attestation": symmetric_key(key)})
    assert created["statusCode"] == 200
    assert created["result"]["etag"]

    # A read shows no keys; the attestation mechanism call does.
    shown = service(hub, "getIndividualEnrollment", rid)["result"]
    assert shown["registrationId"] == rid
    assert shown["attestation"] == {"type": "symmetricKey", "symmetricKey": {}}
    assert shown["etag"] == created["result"]["etag"]
    mechanism = service(hub, "getIndividualEnrollmentAttestationMechanism", rid)["result"]
    assert mechanism["symmetricKey"]["primaryKey"] == key

    missing = service_error(hub, "getIndividualEnrollment", unique("node-missing"))
    assert missing["statusCode"] == 404
    assert missing["message"] == "Not found"

    # Bulk create (POST /enrollments/ with a trailing slash, callback form).
    bulk_ids = [unique(f"node-bulk{i}") for i in range(3)]
    bulk = service(hub, "runBulkEnrollmentOperation", {
        "mode": "create",
        "enrollments": [{"registrationId": b, "attestation": symmetric_key()} for b in bulk_ids],
    })["result"]
    assert bulk == {"isSuccessful": True, "errors": []}
    for b in bulk_ids:
        generated = service(hub, "getIndividualEnrollmentAttestationMechanism", b)["result"]
        assert generated["symmetricKey"]["primaryKey"]

    # A bulk create naming an existing enrollment reports it and creates nothing.
    fresh = unique("node-bulk-fresh")
    refused = service(hub, "runBulkEnrollmentOperation", {
        "mode": "create",
        "enrollments": [{"registrationId": fresh, "attestation": symmetric_key()},
                        {"registrationId": bulk_ids[0], "attestation": symmetric_key()}],
    })["result"]
    assert refused["isSuccessful"] is False
    assert [e["registrationId"] for e in refused["errors"]] == [bulk_ids[0]]
    assert service_error(hub, "getIndividualEnrollment", fresh)["statusCode"] == 404

    # A query one item a page, followed to its end.
    pages = query_pages(hub, "createIndividualEnrollmentQuery", {"query": "*"}, 1)
    assert all(len(p["items"]) == 1 for p in pages), pages
    assert all(p["itemType"] == "enrollment" for p in pages)
    assert all(p["continuation"] for p in pages[:-1]) and pages[-1]["continuation"] is None
    listed = [p["items"][0]["registrationId"] for p in pages]
    assert len(listed) == len(set(listed))
    assert {rid, *bulk_ids} <= set(listed)

    for enrollment_id in [rid, *bulk_ids]:
        assert service(hub, "deleteIndividualEnrollment", enrollment_id)["result"] is None
        assert service_error(hub, "getIndividualEnrollment", enrollment_id)["statusCode"] == 404
    assert service_error(hub, "deleteIndividualEnrollment", rid)["statusCode"] == 404


def test_service_enrollment_groups_with_etags(hub):
    gid = unique("node-svc-group")
    created = service(hub, "createOrUpdateEnrollmentGroup",
                      {"enrollmentGroupId": gid, "attestation": symmetric_key()})["result"]
    first_etag = created["etag"]
    assert created["enrollmentGroupId"] == gid and first_etag

    # Update with the etag it got back: accepted, with a new etag.
    updated = service(hub, "createOrUpdateEnrollmentGroup", {
        "enrollmentGroupId": gid, "etag": first_etag, "attestation": symmetric_key(),
        "initialTwin": {"tags": {"fleet": "node"}},
    })["result"]
    assert updated["etag"] and updated["etag"] != first_etag
    assert updated["initialTwin"]["tags"] == {"fleet": "node"}
    shown = service(hub, "getEnrollmentGroup", gid)["result"]
    assert shown["etag"] == updated["etag"]
    assert shown["initialTwin"]["tags"] == {"fleet": "node"}

    # The stale etag: refused with 412, which the SDK names InvalidEtagError; nothing changes.
    stale = service_error(hub, "createOrUpdateEnrollmentGroup", {
        "enrollmentGroupId": gid, "etag": first_etag, "attestation": symmetric_key(),
    })
    assert stale["class"] == "InvalidEtagError" and stale["statusCode"] == 412
    assert service(hub, "getEnrollmentGroup", gid)["result"]["etag"] == updated["etag"]

    # Keys (generated, 64 bytes) through POST /enrollmentgroups/{id}/attestationmechanism.
    mechanism = service(hub, "getEnrollmentGroupAttestationMechanism", gid)["result"]
    assert mechanism["type"] == "symmetricKey"
    assert len(mechanism["symmetricKey"]["primaryKey"]) == 88
    assert len(mechanism["symmetricKey"]["secondaryKey"]) == 88

    pages = query_pages(hub, "createEnrollmentGroupQuery", {"query": "*"}, 1)
    assert gid in [item["enrollmentGroupId"] for p in pages for item in p["items"]]
    assert all(p["itemType"] == "enrollmentGroup" for p in pages)

    # Delete with a stale etag is refused; with the current one it deletes.
    assert service_error(hub, "deleteEnrollmentGroup", gid, first_etag)["class"] == "InvalidEtagError"
    assert service(hub, "deleteEnrollmentGroup", gid, updated["etag"])["result"] is None
    assert service_error(hub, "getEnrollmentGroup", gid)["statusCode"] == 404


def test_service_registration_states(hub):
    gid = unique("node-svc-reg")
    service(hub, "createOrUpdateEnrollmentGroup",
            {"enrollmentGroupId": gid, "attestation": symmetric_key()})
    group_key = service(hub, "getEnrollmentGroupAttestationMechanism", gid)["result"]
    group_key = group_key["symmetricKey"]["primaryKey"]
    rids = [f"{gid}-a", f"{gid}-b"]
    for rid in rids:
        assert register(hub, "mqtt", rid, derive(group_key, rid))["status"] == "assigned"

    record = service(hub, "getDeviceRegistrationState", rids[0])["result"]
    assert record["registrationId"] == rids[0]
    assert record["status"] == "assigned"
    assert record["deviceId"] == rids[0]
    assert record["assignedHub"] == hub.hostname
    assert record["etag"]

    pages = query_pages(hub, "createEnrollmentGroupDeviceRegistrationStateQuery",
                        {"query": "*"}, gid, 1)
    assert sorted(item["registrationId"] for p in pages for item in p["items"]) == rids
    assert all(p["itemType"] == "deviceRegistration" for p in pages)

    # Delete by id alone, and by id with the record's etag.
    assert service(hub, "deleteDeviceRegistrationState", rids[0])["result"] is None
    other = service(hub, "getDeviceRegistrationState", rids[1])["result"]
    assert service(hub, "deleteDeviceRegistrationState", rids[1], other["etag"])["result"] is None
    for rid in rids:
        gone = service_error(hub, "getDeviceRegistrationState", rid)
        assert gone["statusCode"] == 404
    # Deleting the record leaves the hub device alone, as in DPS.
    hub.registry_manager().get_device(rids[0])
