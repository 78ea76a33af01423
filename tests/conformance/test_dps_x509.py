"""X.509 provisioning against the real Python device SDK: an individual enrollment with the
device's own (self-signed) certificate, and an enrollment group on an intermediate CA whose root
was verified by proof of possession, over MQTT and WebSocket. Each device then connects to its
hub with the same certificate. The refusals (CN not the registration id, missing intermediate,
unverified CA) create nothing."""

from __future__ import annotations

from pathlib import Path

import pytest
from azure.iot.device import IoTHubDeviceClient, Message, ProvisioningDeviceClient, X509

from dps_helpers import (
    dps_info, dps_rest, error_chain, make_root, make_self_signed, make_signed, sha1_thumbprint,
    stored_events, upload_verified_ca, wait_for,
)

IRONHUB_ADDRESS = "127.0.0.11"


@pytest.fixture(scope="module")
def pki(hub, tmp_path_factory):
    """A verified root CA and an intermediate it signed (the group's certificate)."""
    tmp = tmp_path_factory.mktemp("pki")
    make_root(tmp, "root", "Fleet Root CA")
    make_signed(tmp, "intermediate", "Fleet Intermediate CA", "root", ca=True)
    upload_verified_ca(hub, "fleet-root", tmp, "root")
    group = {
        "enrollmentGroupId": "x509-fleet",
        "attestation": {"type": "x509", "x509": {"signingCertificates": {
            "primary": {"certificate": (tmp / "intermediate.pem").read_text()}}}},
    }
    r = dps_rest(hub, "PUT", "/enrollmentGroups/x509-fleet", group)
    assert r.status_code == 200, r.text
    # Reads show certificate information, never the PEM.
    info = r.json()["attestation"]["x509"]["signingCertificates"]["primary"]["info"]
    assert info["subjectName"] == "CN=Fleet Intermediate CA"
    return tmp


def ca_pem(hub) -> str:
    return Path(hub.ca_file).read_text()


def register(hub, registration_id: str, cert: Path, key: Path, websockets: bool):
    client = ProvisioningDeviceClient.create_from_x509_certificate(
        provisioning_host=hub.address,
        registration_id=registration_id,
        id_scope=dps_info(hub)["idScope"],
        x509=X509(cert_file=str(cert), key_file=str(key)),
        server_verification_cert=ca_pem(hub),
        websockets=websockets,
    )
    return client.register()


def connect_and_send(hub, result, cert: Path, key: Path, text: str) -> None:
    state = result.registration_state
    device = IoTHubDeviceClient.create_from_x509_certificate(
        x509=X509(cert_file=str(cert), key_file=str(key)),
        hostname=state.assigned_hub,
        device_id=state.device_id,
        server_verification_cert=ca_pem(hub),
    )
    try:
        device.connect()
        device.send_message(Message(text))
    finally:
        device.shutdown()
    wait_for(lambda: text in [e["body"] for e in stored_events(hub, state.device_id)],
             what=f"{state.device_id}'s telemetry")


@pytest.mark.parametrize("websockets", [False, True], ids=["mqtt", "websocket"])
def test_individual_x509_enrollment(hub, tmp_path, websockets):
    rid = f"x509-ind-{'ws' if websockets else 'mqtt'}"
    make_self_signed(tmp_path, "device", rid)
    enrollment = {
        "registrationId": rid,
        "attestation": {"type": "x509", "x509": {"clientCertificates": {
            "primary": {"certificate": (tmp_path / "device.pem").read_text()}}}},
    }
    r = dps_rest(hub, "PUT", f"/enrollments/{rid}", enrollment)
    assert r.status_code == 200, r.text

    result = register(hub, rid, tmp_path / "device.pem", tmp_path / "device.key", websockets)
    assert result.status == "assigned"
    assert result.registration_state.device_id == rid
    # DPS registers X.509 devices in the hub by thumbprint (Azure docs, Quickstart: Provision an
    # X.509 certificate simulated device, 'Confirm your device provisioning registration').
    device = hub.registry_manager().get_device(rid)
    assert device.authentication.type == "selfSigned"
    assert device.authentication.x509_thumbprint.primary_thumbprint == sha1_thumbprint(tmp_path / "device.pem")
    connect_and_send(hub, result, tmp_path / "device.pem", tmp_path / "device.key", f"hi from {rid}")


@pytest.mark.parametrize("websockets", [False, True], ids=["mqtt", "websocket"])
def test_group_x509_enrollment_through_a_verified_root(hub, pki, tmp_path, websockets):
    rid = f"x509-grp-{'ws' if websockets else 'mqtt'}"
    make_signed(pki, rid, rid, "intermediate")
    # The whole chain, leaf first, as the SDK sends the file in the TLS handshake.
    chain = tmp_path / "chain.pem"
    chain.write_text("".join((pki / f"{n}.pem").read_text() for n in (rid, "intermediate", "root")))
    result = register(hub, rid, chain, pki / f"{rid}.key", websockets)
    assert result.status == "assigned"
    assert result.registration_state.device_id == rid
    r = dps_rest(hub, "GET", f"/registrations/{rid}")
    assert r.status_code == 200 and r.json()["status"] == "assigned", r.text
    r = dps_rest(hub, "POST", "/registrations/x509-fleet/query")
    assert rid in [s["registrationId"] for s in r.json()]
    connect_and_send(hub, result, chain, pki / f"{rid}.key", f"hi from {rid}")


def assert_refused_and_nothing_created(hub, rid: str, attempt) -> None:
    with pytest.raises(Exception) as refused:
        attempt()
    assert "status code 401" in error_chain(refused.value)
    assert dps_rest(hub, "GET", f"/registrations/{rid}").status_code == 404
    with pytest.raises(Exception):
        hub.registry_manager().get_device(rid)


def test_x509_refusals_create_nothing(hub, pki, tmp_path):
    # The registration id must be the certificate's CN.
    make_signed(pki, "cn-owner", "cn-owner", "intermediate")
    chain = tmp_path / "cn.pem"
    chain.write_text("".join((pki / f"{n}.pem").read_text() for n in ("cn-owner", "intermediate", "root")))
    assert_refused_and_nothing_created(
        hub, "not-the-cn", lambda: register(hub, "not-the-cn", chain, pki / "cn-owner.key", False))

    # Without the intermediate, the chain does not reach the verified root.
    make_signed(pki, "no-intermediate", "no-intermediate", "intermediate")
    assert_refused_and_nothing_created(
        hub, "no-intermediate",
        lambda: register(hub, "no-intermediate", pki / "no-intermediate.pem",
                         pki / "no-intermediate.key", False))

    # A group on a CA that was uploaded but never verified admits nobody.
    make_root(tmp_path, "unverified", "Unverified Root")
    r = dps_rest(hub, "PUT", "/dps/certificates/unverified",
                 {"properties": {"certificate": (tmp_path / "unverified.pem").read_text()}})
    assert r.status_code == 201, r.text
    group = {
        "enrollmentGroupId": "unverified-group",
        "attestation": {"type": "x509", "x509": {"caReferences": {"primary": "unverified"}}},
    }
    assert dps_rest(hub, "PUT", "/enrollmentGroups/unverified-group", group).status_code == 200
    make_signed(tmp_path, "stray", "stray", "unverified")
    stray_chain = tmp_path / "stray-chain.pem"
    stray_chain.write_text((tmp_path / "stray.pem").read_text() + (tmp_path / "unverified.pem").read_text())
    assert_refused_and_nothing_created(
        hub, "stray", lambda: register(hub, "stray", stray_chain, tmp_path / "stray.key", False))

    # An upload that holds a private key is refused.
    with_key = (tmp_path / "unverified.pem").read_text() + (tmp_path / "unverified.key").read_text()
    r = dps_rest(hub, "PUT", "/dps/certificates/with-key", {"properties": {"certificate": with_key}})
    assert r.status_code == 400, r.text
    assert r.json()["errorCode"] == 400004
    assert dps_rest(hub, "GET", "/dps/certificates/with-key").status_code == 404
