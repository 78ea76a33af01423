"""Operational certificates issued from a device's CSR, with a device that brings only a key
pair: paho-mqtt for the wire and `cryptography` for its keys and CSRs, as the Azure SDK for C's
certificate-management samples and the Python SDK's preview do it.

The device registers with DPS over MQTT (API `2025-07-01-preview`) with `"csr"` in its
register body and gets `issuedCertificateChain` (checked with `openssl verify`); it connects to
its hub with that certificate; it renews it on `$iothub/credentials/POST/issueCertificate/`
(202, then 200 with the chain) and connects with the new one. Bad CSRs and requests are refused
with IoT Hub's and DPS's errors, and a disabled device is refused whatever it holds.

The server runs with a second issuing CA from its config file (`[[issuing_cas]]`, its own
validity): a group naming it in `clientCertificateIssuancePolicy` (written and read back with the
DPS service SDK, which passes the JSON through) gets its devices certificates from that CA, and
the hub renews them with the same CA; a third CA, configured without renewal, refuses renewals;
an enrollment naming a CA that is not configured is refused.
"""

from __future__ import annotations

import base64
import time
import json
import queue
import ssl
import subprocess
import datetime
import uuid
from pathlib import Path

import paho.mqtt.client as paho
import pytest
import requests
from azure.core.exceptions import HttpResponseError, ResourceNotFoundError
from azure.iot.deviceprovisioning import DeviceProvisioningClient
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from conftest import require_tool
from dps_helpers import derive, dps_info, new_key, sas, stored_events, wait_for

IRONHUB_ADDRESS = "127.0.0.101"

DPS_API = "2025-07-01-preview"
HUB_API = "2025-08-01-preview"
ANSWER_S = 20

# The second issuing CA, configured in the server's config file.
SECOND_CA = "short-lived"
SECOND_CA_DAYS = 3


# A third one that does not renew over `$iothub/credentials`.
FROZEN_CA = "no-renewal"


def make_ca(workdir: Path, name: str) -> tuple[Path, Path]:
    """A P-384 issuing CA made here: its certificate and PKCS#8 key, PEM."""
    key = ec.generate_private_key(ec.SECP384R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"conformance {name} CA")])
    now = datetime.datetime.now(datetime.timezone.utc)
    ca = (x509.CertificateBuilder()
          .subject_name(subject).issuer_name(subject)
          .public_key(key.public_key())
          .serial_number(x509.random_serial_number())
          .not_valid_before(now - datetime.timedelta(minutes=5))
          .not_valid_after(now + datetime.timedelta(days=365))
          .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
          .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                       content_commitment=False, key_encipherment=False,
                                       data_encipherment=False, key_agreement=False,
                                       encipher_only=False, decipher_only=False), critical=True)
          .sign(key, hashes.SHA384()))
    cert_path, key_path = workdir / f"{name}-ca.pem", workdir / f"{name}-ca.key"
    cert_path.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    return cert_path, key_path


def ironhub_args(workdir: Path) -> list[str]:
    """A config file naming two more issuing CAs: one with its own validity, one that does not
    renew."""
    text = ""
    for name, extra in ((SECOND_CA, f"validity_days = {SECOND_CA_DAYS}"), (FROZEN_CA, "renewal = false")):
        cert, key = make_ca(workdir, name)
        text += f'[[issuing_cas]]\nname = "{name}"\ncert = "{cert}"\nkey = "{key}"\n{extra}\n'
    config = workdir / "ironhub.toml"
    config.write_text(text)
    return ["--config", str(config)]


@pytest.fixture(scope="module")
def dps(hub):
    return DeviceProvisioningClient.from_connection_string(
        dps_info(hub)["serviceConnectionString"], connection_verify=hub.ca_file
    )


def new_csr(cn: str) -> tuple[ec.EllipticCurvePrivateKey, str]:
    """A fresh P-256 key and a CSR for it, base64 DER as the device sends it."""
    key = ec.generate_private_key(ec.SECP256R1())
    csr = (x509.CertificateSigningRequestBuilder()
           .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)]))
           .sign(key, hashes.SHA256()))
    return key, base64.b64encode(csr.public_bytes(serialization.Encoding.DER)).decode()


class Mqtt:
    """A paho connection that collects what it receives."""

    def __init__(self, hub, client_id: str, username: str, password: str | None = None,
                 cert: tuple[Path, Path] | None = None):
        self.answers: queue.Queue = queue.Queue()
        self.client = paho.Client(client_id=client_id, clean_session=True, protocol=paho.MQTTv311)
        self.client.username_pw_set(username, password)
        ctx = ssl.create_default_context(cafile=hub.ca_file)
        if cert:
            ctx.load_cert_chain(certfile=str(cert[0]), keyfile=str(cert[1]))
        self.client.tls_set_context(ctx)
        self.client.on_message = lambda c, u, m: self.answers.put((m.topic, m.payload))
        self.connack: list[int] = []
        self.client.on_connect = lambda c, u, f, rc: self.connack.append(rc)
        self.client.connect(hub.address, 8883, keepalive=60)
        self.client.loop_start()
        wait_for(lambda: self.connack, what="CONNACK")

    def subscribe(self, topic: str) -> None:
        subscribed = []
        self.client.on_subscribe = lambda c, u, mid, granted: subscribed.append(granted)
        self.client.subscribe(topic, 1)
        wait_for(lambda: subscribed, what=f"SUBACK for {topic}")
        assert subscribed[0][0] != 0x80, f"{topic} refused"

    def ask(self, topic: str, body) -> tuple[str, dict]:
        payload = body if isinstance(body, bytes) else json.dumps(body).encode()
        self.client.publish(topic, payload, qos=1)
        return self.next()

    def next(self) -> tuple[str, dict]:
        topic, payload = self.answers.get(timeout=ANSWER_S)
        return topic, json.loads(payload)

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


def enroll(dps, rid: str) -> str:
    key = new_key()
    dps.enrollment.create_or_update(id=rid, enrollment={
        "registrationId": rid,
        "attestation": {"type": "symmetricKey", "symmetricKey": {"primaryKey": key, "secondaryKey": key}}})
    return key


def retry_after(topic: str) -> float:
    """The seconds a DPS answer's topic asks the device to wait (`retry-after=`), else 1."""
    for part in topic.split("?", 1)[-1].split("&"):
        if part.startswith("retry-after="):
            return float(part.split("=", 1)[1])
    return 1.0


def register_with_csr(hub, rid: str, key: str, csr: str) -> tuple[str, dict]:
    """DPS over MQTT, by hand: register with the CSR, poll until the operation ends. Returns
    the final topic and body (or the register's answer when it is an error)."""
    scope = dps_info(hub)["idScope"]
    m = Mqtt(hub, rid, f"{scope}/registrations/{rid}/api-version={DPS_API}",
             sas(f"{scope}/registrations/{rid}", key, "registration"))
    try:
        assert m.connack == [0]
        m.subscribe("$dps/registrations/res/#")
        topic, body = m.ask("$dps/registrations/PUT/iotdps-register/?$rid=1",
                            {"registrationId": rid, "csr": csr})
        if not topic.startswith("$dps/registrations/res/202/"):
            return topic, body
        operation = body["operationId"]
        for i in range(50):
            # As a device does: wait what the answer's retry-after says (DPS refuses a device
            # that polls faster with 429, which names its own retry-after).
            time.sleep(min(retry_after(topic), 3))
            topic, body = m.ask(
                f"$dps/registrations/GET/iotdps-get-operationstatus/?$rid=p{i}&operationId={operation}", b"")
            if not topic.startswith(("$dps/registrations/res/202/", "$dps/registrations/res/429/")):
                return topic, body
        raise AssertionError("the registration never ended")
    finally:
        m.close()


def save_chain(tmp: Path, name: str, chain: list[str], key: ec.EllipticCurvePrivateKey) -> tuple[Path, Path]:
    """Writes the leaf and its key (for TLS) and the issuers (for openssl verify)."""
    pems = [x509.load_der_x509_certificate(base64.b64decode(c)).public_bytes(serialization.Encoding.PEM)
            for c in chain]
    (tmp / f"{name}.pem").write_bytes(pems[0])
    (tmp / f"{name}-issuers.pem").write_bytes(b"".join(pems[1:]))
    (tmp / f"{name}.key").write_bytes(key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    return tmp / f"{name}.pem", tmp / f"{name}.key"


def openssl_verify(tmp: Path, name: str) -> None:
    """The chain verifies with openssl: the leaf, for client authentication, through the issuing
    CA (the last certificate of the chain, self-signed)."""
    proc = subprocess.run(
        ["openssl", "verify", "-purpose", "sslclient", "-CAfile", str(tmp / f"{name}-issuers.pem"),
         str(tmp / f"{name}.pem")], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.strip().endswith(": OK"), proc.stdout


def hub_connection(hub, device_id: str, cert: tuple[Path, Path]) -> Mqtt:
    return Mqtt(hub, device_id, f"{hub.hostname}/{device_id}/?api-version={HUB_API}", None, cert)


def renew(m: Mqtt, device_id: str) -> tuple[ec.EllipticCurvePrivateKey, list[str]]:
    """Renews over `$iothub/credentials` (subscribed): a new key and its certificate chain."""
    key, request = new_csr(device_id)
    rid = str(uuid.uuid4())
    topic, accepted = m.ask(f"$iothub/credentials/POST/issueCertificate/?$rid={rid}",
                            {"id": device_id, "csr": request, "replace": "*"})
    assert topic == f"$iothub/credentials/res/202/?$rid={rid}", (topic, accepted)
    assert accepted["correlationId"] and accepted["operationExpires"]
    topic, issued = m.next()
    assert topic == f"$iothub/credentials/res/200/?$rid={rid}", (topic, issued)
    assert issued["correlationId"] == accepted["correlationId"]
    return key, issued["certificates"]


def send(hub, device_id: str, cert: tuple[Path, Path], text: str) -> None:
    m = hub_connection(hub, device_id, cert)
    try:
        assert m.connack == [0], m.connack
        m.client.publish(f"devices/{device_id}/messages/events/", text.encode(), qos=1).wait_for_publish(ANSWER_S)
    finally:
        m.close()
    wait_for(lambda: text in [e["body"] for e in stored_events(hub, device_id)],
             what=f"{device_id}'s telemetry")


def test_a_device_with_only_a_key_pair_gets_renews_and_uses_certificates(hub, dps, tmp_path):
    require_tool("openssl")
    rid = "csr-device-1"
    sas_key = enroll(dps, rid)
    key, csr = new_csr(rid)
    topic, body = register_with_csr(hub, rid, sas_key, csr)
    assert topic.startswith("$dps/registrations/res/200/"), (topic, body)
    assert body["status"] == "assigned", body
    state = body["registrationState"]
    assert state["deviceId"] == rid and state["assignedHub"] == hub.hostname
    chain = state["issuedCertificateChain"]
    assert len(chain) == 2
    leaf = x509.load_der_x509_certificate(base64.b64decode(chain[0]))
    assert leaf.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == rid
    assert leaf.public_key().public_numbers() == key.public_key().public_numbers()
    assert ExtendedKeyUsageOID.CLIENT_AUTH in leaf.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    issuer = x509.load_der_x509_certificate(base64.b64decode(chain[1]))
    assert isinstance(issuer.public_key(), ec.EllipticCurvePublicKey)
    assert issuer.public_key().curve.name == "secp384r1", "ECC P-384 as Azure's issuing CAs"
    assert isinstance(leaf.signature_hash_algorithm, hashes.SHA384)
    cert = save_chain(tmp_path, "first", chain, key)
    openssl_verify(tmp_path, "first")

    # The hub device authenticates by CA, and the hub trusts what it issued.
    device = hub.registry_manager().get_device(rid)
    assert device.authentication.type == "certificateAuthority"
    send(hub, rid, cert, "hello with an issued certificate")

    # Renewal on the hub connection: a new key, a new certificate.
    m = hub_connection(hub, rid, cert)
    try:
        m.subscribe("$iothub/credentials/res/#")
        new_key_, renewed = renew(m, rid)
        new_request = new_csr(rid)[1]

        # A request for another device is refused at once.
        topic, refused = m.ask("$iothub/credentials/POST/issueCertificate/?$rid=r-other",
                               {"id": "someone-else", "csr": new_request})
        assert topic == "$iothub/credentials/res/400/?$rid=r-other", topic
        assert refused["errorCode"] == 400004
        # A CSR for another name is accepted, then refused with the credential error.
        _, foreign = new_csr("someone-else")
        topic, _ = m.ask("$iothub/credentials/POST/issueCertificate/?$rid=r-foreign",
                         {"id": rid, "csr": foreign})
        assert topic == "$iothub/credentials/res/202/?$rid=r-foreign", topic
        topic, failed = m.next()
        assert topic == "$iothub/credentials/res/400/?$rid=r-foreign", topic
        assert failed["errorCode"] == 400037
        assert failed["info"]["credentialError"] and failed["info"]["credentialMessage"]
        assert failed["info"]["requestId"] == "r-foreign"
    finally:
        m.close()
    new_cert = save_chain(tmp_path, "renewed", renewed, new_key_)
    openssl_verify(tmp_path, "renewed")
    assert x509.load_pem_x509_certificate(new_cert[0].read_bytes()).serial_number != leaf.serial_number
    send(hub, rid, new_cert, "hello with a renewed certificate")

    # Disabled, the device is refused whatever certificate it holds.
    rm = hub.registry_manager()
    d = rm.get_device(rid)
    rm.update_device_with_certificate_authority(rid, d.etag, status="disabled")
    m = hub_connection(hub, rid, new_cert)
    try:
        assert m.connack == [5], m.connack
    finally:
        m.close()


def test_bad_csrs_are_refused_at_registration_and_create_nothing(hub, dps):
    rid = "csr-bad"
    sas_key = enroll(dps, rid)
    _, foreign = new_csr("another-device")
    _, good = new_csr(rid)
    der = bytearray(base64.b64decode(good))
    der[-1] ^= 0x01  # the signature no longer verifies
    for csr in (foreign, base64.b64encode(bytes(der)).decode(), "bm90IGEgY3Ny", "not base64!"):
        topic, body = register_with_csr(hub, rid, sas_key, csr)
        assert topic.startswith("$dps/registrations/res/400/"), (csr, topic, body)
        assert body["errorCode"] == 400004, body
    with pytest.raises(ResourceNotFoundError):
        dps.device_registration_state.get(id=rid)
    assert rid not in [d.device_id for d in hub.registry_manager().get_devices()]


def test_https_registration_with_a_csr(hub, dps, tmp_path):
    """The same over DPS's HTTPS device API (the Node transport's and Tasmota's wire)."""
    require_tool("openssl")
    rid = "csr-https"
    scope = dps_info(hub)["idScope"]
    token = sas(f"{scope}/registrations/{rid}", enroll(dps, rid), "registration")
    base = f"https://{hub.address}/{scope}/registrations/{rid}"

    def put(csr: str) -> requests.Response:
        return requests.put(f"{base}/register", params={"api-version": DPS_API},
                            json={"registrationId": rid, "csr": csr},
                            headers={"Authorization": token}, timeout=30, verify=hub.ca_file)

    refused = put(new_csr("someone-else")[1])
    assert refused.status_code == 400 and refused.json()["errorCode"] == 400004, refused.text

    key, csr = new_csr(rid)
    started = put(csr)
    assert started.status_code == 202, started.text
    operation = started.json()["operationId"]

    def poll():
        r = requests.get(f"{base}/operations/{operation}", params={"api-version": DPS_API},
                         headers={"Authorization": token}, timeout=30, verify=hub.ca_file)
        assert r.status_code in (200, 202), r.text
        return r.json() if r.status_code == 200 else None

    done = wait_for(poll, what="the registration")
    assert done["status"] == "assigned", done
    cert = save_chain(tmp_path, "https", done["registrationState"]["issuedCertificateChain"], key)
    openssl_verify(tmp_path, "https")
    send(hub, rid, cert, "hello over a certificate from the HTTPS registration")


def days_left(chain: list[str]) -> float:
    leaf = x509.load_der_x509_certificate(base64.b64decode(chain[0]))
    left = leaf.not_valid_after_utc - datetime.datetime.now(datetime.timezone.utc)
    return left.total_seconds() / 86400


def ca_of(hub, name: str) -> x509.Certificate:
    """The certificate of a CA `ironhub_args` made."""
    return x509.load_pem_x509_certificate((hub.workdir / f"{name}-ca.pem").read_bytes())


def register_in_group(hub, dps, tmp: Path, ca: str, rid: str) -> tuple[list[str], tuple[Path, Path]]:
    """A group naming the issuing CA `ca` (written and read back with the service SDK, which
    round-trips the field: its models are the JSON itself), and a device of it registered with
    a CSR. Returns the chain, and the certificate and key written for TLS."""
    group_id, group_key = f"group-{rid}", new_key()
    policy = {"certificateAuthorityName": ca}
    dps.enrollment_group.create_or_update(id=group_id, enrollment_group={
        "enrollmentGroupId": group_id,
        "attestation": {"type": "symmetricKey",
                        "symmetricKey": {"primaryKey": group_key, "secondaryKey": group_key}},
        "clientCertificateIssuancePolicy": policy})
    group = dps.enrollment_group.get(id=group_id)
    assert group["clientCertificateIssuancePolicy"] == policy, group
    key, csr = new_csr(rid)
    topic, body = register_with_csr(hub, rid, derive(group_key, rid), csr)
    assert topic.startswith("$dps/registrations/res/200/"), (topic, body)
    chain = body["registrationState"]["issuedCertificateChain"]
    issuer = x509.load_der_x509_certificate(base64.b64decode(chain[1]))
    assert issuer == ca_of(hub, ca), "issued by the group's CA"
    return chain, save_chain(tmp, rid, chain, key)


def verify_with(hub, tmp: Path, name: str, ca: str) -> None:
    """openssl verify of the chain saved as `name`, against the configured CA's own file."""
    (tmp / f"{name}-issuers.pem").write_bytes((hub.workdir / f"{ca}-ca.pem").read_bytes())
    openssl_verify(tmp, name)


def test_a_group_naming_a_second_ca_gets_and_renews_its_certificates(hub, dps, tmp_path):
    require_tool("openssl")
    rid = "csr-second-ca-1"
    chain, cert = register_in_group(hub, dps, tmp_path, SECOND_CA, rid)
    assert SECOND_CA_DAYS - 0.01 < days_left(chain) <= SECOND_CA_DAYS, days_left(chain)
    verify_with(hub, tmp_path, rid, SECOND_CA)
    send(hub, rid, cert, "hello with a certificate of the second CA")

    # The hub renews with the CA that issued the device's certificate, and its validity.
    m = hub_connection(hub, rid, cert)
    try:
        assert m.connack == [0], m.connack
        m.subscribe("$iothub/credentials/res/#")
        new_key_, renewed = renew(m, rid)
    finally:
        m.close()
    assert x509.load_der_x509_certificate(base64.b64decode(renewed[1])) == ca_of(hub, SECOND_CA)
    assert SECOND_CA_DAYS - 0.01 < days_left(renewed) <= SECOND_CA_DAYS, days_left(renewed)
    new_cert = save_chain(tmp_path, "renewed", renewed, new_key_)
    verify_with(hub, tmp_path, "renewed", SECOND_CA)
    send(hub, rid, new_cert, "hello with a renewed certificate of the second CA")


def test_a_ca_without_renewal_refuses_renewals(hub, dps, tmp_path):
    rid = "csr-frozen-1"
    _, cert = register_in_group(hub, dps, tmp_path, FROZEN_CA, rid)
    m = hub_connection(hub, rid, cert)
    try:
        assert m.connack == [0], m.connack
        m.subscribe("$iothub/credentials/res/#")
        topic, accepted = m.ask("$iothub/credentials/POST/issueCertificate/?$rid=r-frozen",
                                {"id": rid, "csr": new_csr(rid)[1]})
        assert topic == "$iothub/credentials/res/202/?$rid=r-frozen", (topic, accepted)
        topic, failed = m.next()
        assert topic == "$iothub/credentials/res/400/?$rid=r-frozen", (topic, failed)
        assert FROZEN_CA in failed["info"]["credentialMessage"], failed
    finally:
        m.close()


def test_an_enrollment_naming_an_unknown_ca_is_refused_and_nothing_is_created(hub, dps):
    key = new_key()
    attestation = {"type": "symmetricKey", "symmetricKey": {"primaryKey": key, "secondaryKey": key}}
    unknown = {"certificateAuthorityName": "no-such-ca"}
    with pytest.raises(HttpResponseError) as refused:
        dps.enrollment.create_or_update(id="csr-unknown-ca", enrollment={
            "registrationId": "csr-unknown-ca", "attestation": attestation,
            "clientCertificateIssuancePolicy": unknown})
    assert refused.value.status_code == 400, refused.value
    assert "no-such-ca" in str(refused.value), refused.value
    with pytest.raises(ResourceNotFoundError):
        dps.enrollment.get(id="csr-unknown-ca")
    with pytest.raises(HttpResponseError) as refused:
        dps.enrollment_group.create_or_update(id="csr-unknown-ca", enrollment_group={
            "enrollmentGroupId": "csr-unknown-ca", "attestation": attestation,
            "clientCertificateIssuancePolicy": unknown})
    assert refused.value.status_code == 400, refused.value
    with pytest.raises(ResourceNotFoundError):
        dps.enrollment_group.get(id="csr-unknown-ca")

    # An update to an unknown CA changes nothing; the default CA may be named.
    created = dps.enrollment.create_or_update(id="csr-named-ca", enrollment={
        "registrationId": "csr-named-ca", "attestation": attestation,
        "clientCertificateIssuancePolicy": {"certificateAuthorityName": "default"}})
    with pytest.raises(HttpResponseError) as refused:
        dps.enrollment.create_or_update(id="csr-named-ca", if_match=created["etag"], enrollment={
            **created, "clientCertificateIssuancePolicy": unknown})
    assert refused.value.status_code == 400, refused.value
    kept = dps.enrollment.get(id="csr-named-ca")
    assert kept["clientCertificateIssuancePolicy"] == {"certificateAuthorityName": "default"}
    assert kept["etag"] == created["etag"]
