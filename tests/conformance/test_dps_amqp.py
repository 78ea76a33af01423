"""DPS over AMQP against the real Node.js provisioning SDK: `azure-iot-provisioning-device`'s
`ProvisioningDeviceClient` with `azure-iot-provisioning-device-amqp`'s `Amqp` (AMQP over TLS,
5671) and `AmqpWs` (AMQP over WebSocket, 443, `/$iothub/websocket`) transports, driven through
`node/dps.js` as test_dps_node.py drives the MQTT and HTTP ones.

The device logs in with SASL PLAIN (`{idScope}/registrations/{registrationId}` and a DPS SAS
token) or its TLS client certificate, attaches a sender and a receiver to
`{idScope}/registrations/{registrationId}`, registers, polls, and gets its assignment; it then
connects to the hub it was assigned to (azure-iot-device over AMQP or MQTT) and sends telemetry.
A wrong key is rejected as unauthorized, with DPS's error body, and registers nothing.
"""

from __future__ import annotations

import json

import pytest

from conftest import have_tool, in_ci, test_address
from dps_helpers import derive, make_self_signed, new_key, stored_events, wait_for
from test_dps_node import (  # noqa: F401 (node_sdks: a fixture, the Node SDKs installed)
    assert_no_hub_device, node_error, node_ok, node_sdks, register, register_args,
    register_error, run_node, service, service_error, symmetric_key, unique,
)

IRONHUB_ADDRESS = test_address("127.0.0.53")

TRANSPORTS = ["amqp", "amqpws"]


def send_over(hub, transport: str, state: dict, key: str, text: str) -> None:
    """The provisioned device connects to its assigned hub with azure-iot-device over
    `transport`, sends one message, and the hub's event log holds it."""
    sent = node_ok(hub, "send", "--hub", state["assignedHub"], "--device-id", state["deviceId"],
                   "--key", key, "--text", text, "--transport", transport)
    assert sent["result"] == "MessageEnqueued"
    wait_for(lambda: text in [e["body"] for e in stored_events(hub, state["deviceId"])],
             what=f"{state['deviceId']}'s telemetry in the event log")


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_the_server_certificate_is_verified(hub, transport):
    """Without the CA the SDK refuses the server: the registrations below pass because the
    certificate verifies, not because TLS is lax. (The AMQP transport reports the failed TLS
    handshake only as a lost connection.)"""
    rid = unique("amqp-tls")
    key = new_key()
    service(hub, "createOrUpdateIndividualEnrollment",
            {"registrationId": rid, "attestation": symmetric_key(key)})
    code, out, _ = run_node(hub, *register_args(hub, transport, rid, key), trust_ca=False)
    assert code == 1
    assert out["error"]["class"] == "NotConnectedError", out
    assert_no_hub_device(hub, rid)


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_individual_symmetric_key_enrollment(hub, transport):
    rid = unique(f"amqp-ind-{transport}")
    key = new_key()
    service(hub, "createOrUpdateIndividualEnrollment", {
        "registrationId": rid,
        "attestation": symmetric_key(key),
        "initialTwin": {"tags": {"site": "lab"}, "properties": {"desired": {"fw": "1.0"}}},
    })

    state = register(hub, transport, rid, key, payload={"a": 1})
    assert state["status"] == "assigned"
    assert state["assignedHub"] == hub.hostname
    assert state["deviceId"] == rid
    assert state["substatus"] == "initialAssignment"

    rm = hub.registry_manager()
    assert rm.get_device(rid).authentication.symmetric_key.primary_key == key
    assert rm.get_twin(rid).tags == {"site": "lab"}
    record = service(hub, "getDeviceRegistrationState", rid)["result"]
    assert record["status"] == "assigned" and record["assignedHub"] == hub.hostname

    send_over(hub, "amqp", state, key, f"hello over AMQP from {rid}")


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_group_symmetric_key_enrollment_with_derived_key(hub, transport):
    gid = unique(f"amqp-group-{transport}")
    service(hub, "createOrUpdateEnrollmentGroup",
            {"enrollmentGroupId": gid, "attestation": symmetric_key()})
    group_key = service(hub, "getEnrollmentGroupAttestationMechanism", gid)["result"][
        "symmetricKey"]["primaryKey"]

    rid = f"{gid}-dev1"
    device_key = derive(group_key, rid)
    state = register(hub, transport, rid, device_key)
    assert state["status"] == "assigned"
    assert state["deviceId"] == rid
    assert hub.registry_manager().get_device(rid).authentication.symmetric_key.primary_key == device_key
    send_over(hub, "mqtt", state, device_key, f"hello from {rid}")


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_wrong_key_is_unauthorized(hub, transport):
    rid = unique(f"amqp-wrong-{transport}")
    service(hub, "createOrUpdateIndividualEnrollment",
            {"registrationId": rid, "attestation": symmetric_key(new_key())})
    refused = register_error(hub, transport, rid, new_key())
    # The request is rejected with amqp:unauthorized-access and DPS's error body as the
    # description; the SDK hands the rejection on as it came.
    assert refused["condition"] == "amqp:unauthorized-access", refused
    assert json.loads(refused["description"])["errorCode"] == 401002
    assert_no_hub_device(hub, rid)
    assert service_error(hub, "getDeviceRegistrationState", rid)["statusCode"] == 404

    # A group device with the group key itself: refused the same way.
    gid = unique(f"amqp-wrong-group-{transport}")
    service(hub, "createOrUpdateEnrollmentGroup",
            {"enrollmentGroupId": gid, "attestation": symmetric_key()})
    group_key = service(hub, "getEnrollmentGroupAttestationMechanism", gid)["result"][
        "symmetricKey"]["primaryKey"]
    refused = register_error(hub, transport, f"{gid}-raw", group_key)
    assert refused["condition"] == "amqp:unauthorized-access", refused
    assert_no_hub_device(hub, f"{gid}-raw")


def x509_enrollment(hub, tmp_path, name: str) -> str:
    """An individual enrollment for a new self-signed certificate `{name}.pem` whose CN is the
    registration id; returns the registration id."""
    rid = unique(f"amqp-{name}")
    make_self_signed(tmp_path, name, rid)
    service(hub, "createOrUpdateIndividualEnrollment", {
        "registrationId": rid,
        "attestation": {"type": "x509", "x509": {"clientCertificates": {
            "primary": {"certificate": (tmp_path / f"{name}.pem").read_text()}}}},
    })
    return rid


def x509_register_args(hub, tmp_path, rid: str, cert: str) -> list[str]:
    """`register` over AMQP as `rid` with the certificate `{cert}.pem` and its key."""
    return ["register", "--transport", "amqp", "--host", hub.address,
            "--scope", hub.info["dps"]["idScope"], "--id", rid,
            "--cert", str(tmp_path / f"{cert}.pem"), "--x509-key", str(tmp_path / f"{cert}.key")]


def test_individual_x509_enrollment(hub, tmp_path):
    if not have_tool("openssl"):
        if in_ci():
            pytest.fail("openssl is not installed")
        pytest.skip("openssl is not installed")
    rid = x509_enrollment(hub, tmp_path, "device")
    state = node_ok(hub, *x509_register_args(hub, tmp_path, rid, "device"))["registrationState"]
    assert state["status"] == "assigned" and state["deviceId"] == rid
    assert hub.registry_manager().get_device(rid).authentication.type == "selfSigned"

    # Another device's certificate for this registration: refused, nothing registered.
    other = x509_enrollment(hub, tmp_path, "other")
    refused = node_error(hub, *x509_register_args(hub, tmp_path, other, "device"))
    assert refused["condition"] == "amqp:unauthorized-access", refused
    assert_no_hub_device(hub, other)
