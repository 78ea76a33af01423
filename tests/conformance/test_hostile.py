"""Hostile credentials against real clients (issue 15, "hostile cases"): SAS tokens with
extreme expiries, tokens whose `sr` names another resource than IoT Hub would accept, and keys
with non-canonical base64. Each case is sent by a real client (the Python device SDK, paho as
the SDKs send over MQTT, the service SDK) and the server must answer as IoT Hub does, keep
serving, and leave nothing half-done."""

from __future__ import annotations

import base64
import hashlib
import hmac
import threading
import time
import urllib.parse

import pytest
from azure.iot.device import IoTHubDeviceClient, Message

from dps_helpers import stored_events, wait_for
from test_device import device_key, mqtt_connack

IRONHUB_ADDRESS = "127.0.0.95"
WAIT_S = 10.0
U64_MAX = 2**64 - 1


def token(resource: str, key: str, se, *, encode=lambda s: urllib.parse.quote(s, safe=""), skn=None) -> str:
    """A SAS token for `resource` with the expiry `se` exactly as given (any text), signed with
    `key` over the transmitted `sr` and `se`, as the device SDKs sign."""
    sr = encode(resource)
    sig = base64.b64encode(
        hmac.new(base64.b64decode(key), f"{sr}\n{se}".encode(), hashlib.sha256).digest()
    ).decode()
    out = f"SharedAccessSignature sr={sr}&sig={urllib.parse.quote(sig, safe='')}&se={se}"
    return out + (f"&skn={skn}" if skn else "")


def paho_client(hub, device_id: str, password: str, will: str | None = None):
    """A paho MQTT 3.1.1 client set up as the device SDKs connect (TLS, IoT Hub username)."""
    import paho.mqtt.client as paho

    c = paho.Client(client_id=device_id, clean_session=True, protocol=paho.MQTTv311)
    c.username_pw_set(f"{hub.hostname}/{device_id}/?api-version=2021-04-12", password)
    c.tls_set(ca_certs=hub.ca_file)
    if will is not None:
        c.will_set(f"devices/{device_id}/messages/events/", will, qos=1)
    return c


def connack(hub, device_id: str, password: str) -> int:
    """The CONNACK return code the server answers a paho CONNECT with."""
    import paho.mqtt.client as paho

    return mqtt_connack(hub, paho, device_id, f"{hub.hostname}/{device_id}/?api-version=2021-04-12", password)


def test_a_token_expiring_near_2_pow_64_is_accepted_and_the_connection_behaves(hub, rm):
    """IoT Hub sets no upper bound on `se`: a device that signs its own token with `u64::MAX`
    connects, works, is shown Connected, and when its connection drops it is shown
    Disconnected and its Will is sent (the session ends normally, not by a panic)."""
    key = device_key(rm, "far-sdk")
    resource = f"{hub.hostname}/devices/far-sdk"
    client = IoTHubDeviceClient.create_from_sastoken(
        token(resource, key, U64_MAX), server_verification_cert=open(hub.ca_file).read()
    )
    try:
        client.connect()
        client.send_message(Message("far"))
        client.patch_twin_reported_properties({"far": True})
        assert rm.get_device("far-sdk").connection_state == "Connected"
    finally:
        client.shutdown()
    wait_for(lambda: rm.get_device("far-sdk").connection_state == "Disconnected", what="Disconnected")
    assert [e["body"] for e in stored_events(hub, "far-sdk")] == ["far"]
    assert rm.get_twin("far-sdk").properties.reported["far"] is True

    # paho with a Will, then the power is lost (the socket closes without DISCONNECT).
    key = device_key(rm, "far-will")
    c = paho_client(hub, "far-will", token(f"{hub.hostname}/devices/far-will", key, U64_MAX), will="gone")
    up = threading.Event()
    c.on_connect = lambda client, userdata, flags, rc: rc == 0 and up.set()
    c.connect(hub.address, 8883, keepalive=30)
    c.loop_start()
    try:
        assert up.wait(WAIT_S), "the far-future token is accepted"
        wait_for(lambda: rm.get_device("far-will").connection_state == "Connected", what="Connected")
    finally:
        c.loop_stop()
    c.socket().close()
    wait_for(lambda: rm.get_device("far-will").connection_state == "Disconnected", what="Disconnected after the drop")
    wait_for(lambda: stored_events(hub, "far-will"), what="the Will")
    assert [e["body"] for e in stored_events(hub, "far-will")] == ["gone"]


@pytest.mark.parametrize("se", ["0", "-1", "abc", "", "1.5", str(2**64), str(2**70)])
def test_expiries_out_of_range_or_not_numbers_are_refused(hub, rm, se):
    """An expiry in the past, negative, not an integer or past `u64::MAX`: CONNACK 5 (not
    authorized), and the same device connects right after with a good token."""
    device_id = f"bad-se-{abs(hash(se)) % 10_000}"
    key = device_key(rm, device_id)
    resource = f"{hub.hostname}/devices/{device_id}"
    assert connack(hub, device_id, token(resource, key, se)) == 5
    assert connack(hub, device_id, token(resource, key, int(time.time()) + 3600)) == 0
    wait_for(lambda: rm.get_device(device_id).connection_state == "Disconnected", what="Disconnected")


def test_sr_names_the_device_exactly_with_the_host_in_any_case(hub, rm):
    """IoT Hub compares the host name of `sr` case-insensitively and the device id exactly,
    and a device's own key signs for `{host}/devices/{id}` only (Azure docs, "Control access
    to IoT Hub with SAS", "Security tokens"); a policy with DeviceConnect keeps its prefix."""
    import requests

    key = device_key(rm, "Case-Dev")
    host = hub.hostname
    far = int(time.time()) + 3600

    # The Python SDK url-encodes `sr`; paho here sends it raw, and with the host upper-cased.
    client = IoTHubDeviceClient.create_from_sastoken(
        token(f"{host}/devices/Case-Dev", key, far), server_verification_cert=open(hub.ca_file).read()
    )
    try:
        client.connect()
        client.send_message(Message("sdk"))
    finally:
        client.shutdown()
    assert connack(hub, "Case-Dev", token(f"{host.upper()}/devices/Case-Dev", key, far, encode=lambda s: s)) == 0

    refused = [
        f"{host}/devices/case-dev",          # the id in another case
        f"{host}/devices/CASE-DEV",
        host,                                 # the bare host name, signed with a device key
        f"{host}/devices",
        f"{host}/devices/Case-Dev/modules/m1",
    ]
    for sr in refused:
        assert connack(hub, "Case-Dev", token(sr, key, far)) == 5, sr
        # The HTTPS device routes go through the same check: 401.
        r = requests.get(
            f"https://{hub.address}/devices/Case-Dev/messages/deviceBound",
            params={"api-version": "2020-09-30"},
            headers={"Authorization": token(sr, key, far)},
            verify=hub.ca_file, timeout=WAIT_S,
        )
        assert r.status_code == 401, (sr, r.status_code, r.text)
    ok = requests.get(
        f"https://{hub.address}/devices/Case-Dev/messages/deviceBound",
        params={"api-version": "2020-09-30"},
        headers={"Authorization": token(f"{host}/devices/Case-Dev", key, far)},
        verify=hub.ca_file, timeout=WAIT_S,
    )
    assert ok.status_code == 204, ok.text

    # A policy with DeviceConnect signs for the whole hub, as before.
    parts = hub.connection_string_parts()
    assert parts["SharedAccessKeyName"] == "iothubowner"
    assert connack(hub, "Case-Dev", token(host, parts["SharedAccessKey"], far, skn="iothubowner")) == 0
    assert [e["body"] for e in stored_events(hub, "Case-Dev")] == ["sdk"]


def node_register_http(hub, registration_id: str, key: str) -> dict:
    """`ProvisioningDeviceClient.register()` of the Node SDK over HTTPS (`node/dps.js`)."""
    import json
    import os
    import subprocess
    from pathlib import Path

    from dps_helpers import dps_info

    env = {**os.environ, "NODE_EXTRA_CA_CERTS": hub.ca_file}
    env.pop("DEBUG", None)
    node_dir = Path(__file__).resolve().parent / "node"
    proc = subprocess.run(
        ["node", "dps.js", "register", "--transport", "http", "--host", hub.address,
         "--scope", dps_info(hub)["idScope"], "--id", registration_id, "--key", key],
        cwd=node_dir, env=env, capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return json.loads(proc.stdout.strip().splitlines()[-1])["registrationState"]


def test_dps_registration_ids_differing_only_in_case_are_one_registration(hub, rm):
    """DPS registration ids are case-insensitive (Azure docs, DPS "Device concepts",
    'Registration ID'): the same device registering as `HOSTILE-CASE-01` (Python SDK, MQTT),
    `hostile-case-01` (Node SDK, HTTPS) and `Hostile-Case-01` is one registration record and
    one hub device, named by the first registration; the device's key is the latest one's."""
    from azure.iot.device import ProvisioningDeviceClient
    from azure.iot.deviceprovisioning import DeviceProvisioningClient
    from msrest.exceptions import HttpOperationError

    from dps_helpers import derive, dps_info

    dps = DeviceProvisioningClient.from_connection_string(
        dps_info(hub)["serviceConnectionString"], connection_verify=hub.ca_file
    )
    gid = "hostile-case-group"
    dps.enrollment_group.create_or_update(
        id=gid,
        enrollment_group={"enrollmentGroupId": gid, "attestation": {"type": "symmetricKey", "symmetricKey": {}}},
    )
    group_key = dps.enrollment_group.get_attestation_mechanism(id=gid)["symmetricKey"]["primaryKey"]
    ca = open(hub.ca_file).read()

    def python_mqtt(rid: str) -> tuple[str, str]:
        client = ProvisioningDeviceClient.create_from_symmetric_key(
            provisioning_host=hub.address, registration_id=rid, id_scope=dps_info(hub)["idScope"],
            symmetric_key=derive(group_key, rid), server_verification_cert=ca,
        )
        result = client.register()
        assert result.status == "assigned", result
        return result.registration_state.device_id, result.registration_state.assigned_hub

    first = "HOSTILE-CASE-01"
    assert python_mqtt(first)[0] == first
    state = node_register_http(hub, "hostile-case-01", derive(group_key, "hostile-case-01"))
    assert state["deviceId"] == first
    assert state["registrationId"] == first
    latest = "Hostile-Case-01"
    assert python_mqtt(latest)[0] == first

    records = list(dps.device_registration_state.query(id=gid))
    assert [r["registrationId"] for r in records] == [first]
    assert dps.device_registration_state.get(id="hostile-case-01")["deviceId"] == first
    # One hub device, in the first registration's case, with the latest registration's key.
    assert rm.get_device(first).authentication.symmetric_key.primary_key == derive(group_key, latest)
    for other in ("hostile-case-01", latest):
        with pytest.raises(HttpOperationError) as missing:
            rm.get_device(other)
        assert missing.value.response.status_code == 404


SLOPPY = "a" * 43 + "="          # base64 whose last character has non-zero unused bits
SLOPPY2 = "b" * 42 + "c="


def test_keys_with_non_zero_trailing_bits_work_everywhere(hub, rm):
    """Azure (.NET's decoder) and Python's `base64.b64decode` accept `"a"*43 + "="`: a device
    created with it through the service SDK connects with the device SDK; an individual
    enrollment and a group with such keys provision their devices through the DPS SDK."""
    from azure.iot.device import ProvisioningDeviceClient
    from azure.iot.deviceprovisioning import DeviceProvisioningClient

    from dps_helpers import derive, dps_info

    assert base64.b64decode(SLOPPY) == base64.b64decode("a" * 42 + "Y=")
    created = rm.create_device_with_sas("b64-dev", SLOPPY, SLOPPY2, "enabled")
    # The keys are kept as they were given.
    assert created.authentication.symmetric_key.primary_key == SLOPPY
    assert rm.get_device("b64-dev").authentication.symmetric_key.secondary_key == SLOPPY2
    ca = open(hub.ca_file).read()
    for key in (SLOPPY, SLOPPY2):
        client = IoTHubDeviceClient.create_from_connection_string(
            f"HostName={hub.hostname};DeviceId=b64-dev;SharedAccessKey={key}", server_verification_cert=ca
        )
        try:
            client.connect()
            client.send_message(Message(key[:2]))
        finally:
            client.shutdown()
    wait_for(lambda: len(stored_events(hub, "b64-dev")) == 2, what="both messages")

    dps = DeviceProvisioningClient.from_connection_string(
        dps_info(hub)["serviceConnectionString"], connection_verify=hub.ca_file
    )
    sym = {"type": "symmetricKey", "symmetricKey": {"primaryKey": SLOPPY, "secondaryKey": SLOPPY2}}
    dps.enrollment.create_or_update(id="b64-ind", enrollment={"registrationId": "b64-ind", "attestation": sym})
    dps.enrollment_group.create_or_update(id="b64-group", enrollment_group={"enrollmentGroupId": "b64-group", "attestation": sym})
    assert dps.enrollment_group.get_attestation_mechanism(id="b64-group")["symmetricKey"]["primaryKey"] == SLOPPY

    def provision(rid: str, key: str):
        client = ProvisioningDeviceClient.create_from_symmetric_key(
            provisioning_host=hub.address, registration_id=rid, id_scope=dps_info(hub)["idScope"],
            symmetric_key=key, server_verification_cert=ca,
        )
        result = client.register()
        assert result.status == "assigned", result
        return result.registration_state

    assert provision("b64-ind", SLOPPY).device_id == "b64-ind"
    assert rm.get_device("b64-ind").authentication.symmetric_key.primary_key == SLOPPY
    derived = derive(SLOPPY, "b64-group-dev")
    assert provision("b64-group-dev", derived).device_id == "b64-group-dev"
    # A derived key is written canonically: the server's derivation gives the SDK's string.
    assert rm.get_device("b64-group-dev").authentication.symmetric_key.primary_key == derived


def test_kill9_during_provisioning_leaves_nothing_half_done(hub, rm):
    """A burst of DPS registrations (HTTPS, as the Node SDK and Tasmota register), `kill -9`
    right after the last 202, a restart: every operation then answers `assigned` or `failed`,
    every registration record says the same (none stays `assigning`), an assigned record has
    its hub device with the device's key, no hub device exists without a record, and every
    device registers again to exactly one hub device."""
    import json

    import requests
    from azure.core.exceptions import ResourceNotFoundError
    from azure.iot.deviceprovisioning import DeviceProvisioningClient
    from msrest.exceptions import HttpOperationError

    from dps_helpers import derive, dps_info
    from dps_helpers import sas as dps_sas

    def service():
        return DeviceProvisioningClient.from_connection_string(
            dps_info(hub)["serviceConnectionString"], connection_verify=hub.ca_file
        )

    gid = "crash-group"
    service().enrollment_group.create_or_update(
        id=gid, enrollment_group={"enrollmentGroupId": gid, "attestation": {"type": "symmetricKey", "symmetricKey": {}}}
    )
    group_key = service().enrollment_group.get_attestation_mechanism(id=gid)["symmetricKey"]["primaryKey"]
    scope = dps_info(hub)["idScope"]
    ids = [f"crash-dev-{i:02d}" for i in range(16)]

    def call(method: str, rid: str, path: str, body: bytes = b""):
        token = dps_sas(f"{scope}/registrations/{rid}", derive(group_key, rid), "registration")
        return requests.request(
            method, f"https://{hub.address}/{scope}/registrations/{rid}{path}",
            params={"api-version": "2021-06-01"}, data=body, verify=hub.ca_file, timeout=30,
            headers={"Content-Type": "application/json", "Authorization": token},
        )

    operations = {}
    for rid in ids:
        started = call("PUT", rid, "/register", json.dumps({"registrationId": rid}).encode())
        assert started.status_code == 202, started.text
        operations[rid] = started.json()["operationId"]
    hub.kill9()
    hub.restart()

    dps = service()
    for rid in ids:
        polled = call("GET", rid, f"/operations/{operations[rid]}")
        assert polled.status_code == 200, polled.text
        status = polled.json()["status"]
        assert status in ("assigned", "failed"), polled.text
        try:
            record = dps.device_registration_state.get(id=rid)
        except ResourceNotFoundError:
            record = None
        try:
            device = rm.get_device(rid)
        except HttpOperationError as e:
            assert e.response.status_code == 404
            device = None
        if record is None:
            assert device is None, f"{rid}: a hub device without a registration record"
            continue
        assert record["status"] == status, (rid, record, status)
        if status == "assigned":
            assert device is not None, f"{rid}: assigned, but no hub device"
            assert device.authentication.symmetric_key.primary_key == derive(group_key, rid)

    # Every device registers again, to one hub device each, one record each.
    for rid in ids:
        started = call("PUT", rid, "/register", json.dumps({"registrationId": rid}).encode())
        assert started.status_code == 202, started.text
        op = started.json()["operationId"]
        wait_for(lambda: call("GET", rid, f"/operations/{op}").json()["status"] != "assigning",
                 what=f"{rid} assigned")
        assert call("GET", rid, f"/operations/{op}").json()["status"] == "assigned"
        assert rm.get_device(rid).authentication.symmetric_key.primary_key == derive(group_key, rid)
    records = list(dps.device_registration_state.query(id=gid))
    assert sorted(r["registrationId"] for r in records) == ids
    assert all(r["status"] == "assigned" for r in records)
