"""TPM attestation through DPS, with a software TPM as the device's TPM.

Each test module run starts Debian's `swtpm` in a temporary directory on a Unix socket, and
drives it with `tpm2-tools` exactly as a TPM device's provisioning client does (the Azure IoT C
SDK's `hsm_client_tpm.c`, IoT Edge's `aziot-tpmd`): an endorsement key (`tpm2_createek`,
persisted at 0x81010001) and a storage root key (`tpm2_createprimary -C o`, at 0x81000001);
the server's challenge opened with `tpm2_activatecredential` under an EK policy session; the
device key imported with `tpm2_import`, loaded with `tpm2_load` and persisted at 0x81000100;
every SAS token signed inside the TPM with `tpm2_hmac`. The DPS device requests go over HTTPS
as the Node SDK's HTTP transport sends them (`docs/protocol/tpm.md`, "The exchange"): the
first PUT carries the TPM's keys and no token and is answered 401 with `authenticationKey`.
The provisioned device then connects to its hub with the Python device SDK
(`create_from_sastoken`, the token signed by the TPM). The service SDKs (Python
`azure-iot-deviceprovisioning`, Node `azure-iot-provisioning-service`) and
`ironhub dps enrollment create` make the enrollments.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import shutil
import struct
import subprocess
import time
import urllib.parse
from pathlib import Path

import pytest
import requests
from azure.core.exceptions import ResourceNotFoundError
from azure.iot.device import IoTHubDeviceClient, Message
from azure.iot.deviceprovisioning import DeviceProvisioningClient

from conftest import require_tool, run_cli
from dps_helpers import dps_info, stored_events, wait_for

IRONHUB_ADDRESS = "127.0.0.100"

EK_HANDLE = "0x81010001"
SRK_HANDLE = "0x81000001"
ID_KEY_HANDLE = "0x81000100"
API = "2019-03-31"
TPM_TIMEOUT_S = 30


class SoftTpm:
    """A running swtpm and the tpm2-tools commands a TPM device's provisioning client runs."""

    def __init__(self, workdir: Path):
        self.dir = workdir
        sock = workdir / "tpm.sock"
        # The swtpm TCTI finds the control channel at `<path>.ctrl`.
        self.proc = subprocess.Popen(
            ["swtpm", "socket", "--tpm2", "--tpmstate", f"dir={workdir}",
             "--server", f"type=unixio,path={sock}",
             "--ctrl", f"type=unixio,path={sock}.ctrl",
             "--flags", "not-need-init,startup-clear"],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL,
        )
        self.env = {**os.environ, "TPM2TOOLS_TCTI": f"swtpm:path={sock}"}
        deadline = time.monotonic() + TPM_TIMEOUT_S
        while not (sock.exists() and Path(f"{sock}.ctrl").exists()):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"swtpm did not start: {self.proc.stderr.read()}")
            time.sleep(0.05)
        # No resource manager between the tools and the TPM: flush what each leaves loaded.
        self.run("tpm2_createek", "-c", "ek.ctx", "-G", "rsa", "-u", "ek.pub")
        self.run("tpm2_evictcontrol", "-C", "o", "-c", "ek.ctx", EK_HANDLE)
        self.run("tpm2_createprimary", "-C", "o", "-c", "srk.ctx")
        self.run("tpm2_evictcontrol", "-C", "o", "-c", "srk.ctx", SRK_HANDLE)
        self.run("tpm2_readpublic", "-c", SRK_HANDLE, "-o", "srk.pub")
        self.ek = base64.b64encode((workdir / "ek.pub").read_bytes()).decode()
        self.srk = base64.b64encode((workdir / "srk.pub").read_bytes()).decode()

    def run(self, *args: str) -> subprocess.CompletedProcess:
        proc = subprocess.run(args, cwd=self.dir, env=self.env, capture_output=True,
                              timeout=TPM_TIMEOUT_S)
        subprocess.run(["tpm2_flushcontext", "-t"], cwd=self.dir, env=self.env,
                       capture_output=True, timeout=TPM_TIMEOUT_S)
        if proc.returncode != 0:
            raise TpmError(f"{' '.join(args)} failed: {proc.stderr.decode(errors='replace')}")
        return proc

    def import_key(self, authentication_key: str) -> None:
        """What the device does with an `authenticationKey`: ActivateCredential with the EK
        for the SRK gives the inner wrapper key, with which the duplicated HMAC key is imported
        under the SRK; the key is persisted where the C SDK keeps it."""
        blob = base64.b64decode(authentication_key)
        parts, offset = [], 0
        for _ in range(5):  # TPM2B_ID_OBJECT, TPM2B_ENCRYPTED_SECRET, TPM2B_PRIVATE, seed, public
            (size,) = struct.unpack_from(">H", blob, offset)
            parts.append(blob[offset:offset + 2 + size])
            offset += 2 + size
        credential, secret, duplicate, seed, public = parts
        assert blob[offset:] == b"\x00\x00", "no encrypted data follows the key"
        # tpm2-tools' credential file: its magic and version, then the two TPM2Bs.
        (self.dir / "cred.blob").write_bytes(struct.pack(">II", 0xBADCC0DE, 1) + credential + secret)
        (self.dir / "dup.dpriv").write_bytes(duplicate)
        (self.dir / "dup.seed").write_bytes(seed)
        (self.dir / "id.pub").write_bytes(public)
        self.run("tpm2_startauthsession", "--policy-session", "-S", "session.ctx")
        try:
            self.run("tpm2_policysecret", "-S", "session.ctx", "-c", "e")
            self.run("tpm2_activatecredential", "-c", SRK_HANDLE, "-C", EK_HANDLE,
                     "-i", "cred.blob", "-o", "inner.key", "-P", "session:session.ctx")
        finally:
            self.run("tpm2_flushcontext", "-s")
        self.run("tpm2_import", "-C", SRK_HANDLE, "-u", "id.pub", "-i", "dup.dpriv",
                 "-r", "id.priv", "-s", "dup.seed", "-k", "inner.key")
        self.run("tpm2_load", "-C", SRK_HANDLE, "-u", "id.pub", "-r", "id.priv", "-c", "id.ctx")
        try:
            self.run("tpm2_evictcontrol", "-C", "o", "-c", ID_KEY_HANDLE)
        except TpmError:
            pass  # nothing persisted there yet
        self.run("tpm2_evictcontrol", "-C", "o", "-c", "id.ctx", ID_KEY_HANDLE)

    def hmac(self, data: bytes) -> bytes:
        (self.dir / "hmac.in").write_bytes(data)
        self.run("tpm2_hmac", "-c", ID_KEY_HANDLE, "-o", "hmac.out", "hmac.in")
        return (self.dir / "hmac.out").read_bytes()

    def sas(self, resource: str, key_name: str | None = None, ttl: int = 3600) -> str:
        """A SAS token for `resource`, signed by the TPM's imported key."""
        sr = urllib.parse.quote(resource, safe="")
        se = str(int(time.time()) + ttl)
        sig = base64.b64encode(self.hmac(f"{sr}\n{se}".encode())).decode()
        token = f"SharedAccessSignature sr={sr}&sig={urllib.parse.quote(sig, safe='')}&se={se}"
        return token + (f"&skn={key_name}" if key_name else "")

    def close(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=TPM_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=TPM_TIMEOUT_S)


class TpmError(Exception):
    pass


@pytest.fixture(scope="module")
def tpm(tmp_path_factory):
    for tool in ("swtpm", "tpm2_createek", "tpm2_activatecredential", "tpm2_import", "tpm2_hmac"):
        require_tool(tool)
    t = SoftTpm(tmp_path_factory.mktemp("swtpm"))
    try:
        yield t
    finally:
        t.close()


@pytest.fixture(scope="module")
def dps(hub):
    return DeviceProvisioningClient.from_connection_string(
        dps_info(hub)["serviceConnectionString"], connection_verify=hub.ca_file
    )


def register_url(hub, rid: str) -> str:
    return f"https://{hub.address}/{dps_info(hub)['idScope']}/registrations/{rid}/register"


def put_register(hub, rid: str, tpm_keys: dict, token: str | None = None) -> requests.Response:
    headers = {"Content-Type": "application/json; charset=utf-8"}
    if token:
        headers["Authorization"] = token
    return requests.put(register_url(hub, rid), params={"api-version": API},
                        json={"registrationId": rid, "tpm": tpm_keys}, headers=headers,
                        timeout=30, verify=hub.ca_file)


def keys_of(tpm: SoftTpm) -> dict:
    return {"endorsementKey": tpm.ek, "storageRootKey": tpm.srk}


def provision(hub, tpm: SoftTpm, rid: str) -> dict:
    """The whole device flow over HTTPS: challenge, import, signed register, poll."""
    challenge = put_register(hub, rid, keys_of(tpm))
    assert challenge.status_code == 401, challenge.text
    body = challenge.json()
    assert body["keyName"] == "registration"
    tpm.import_key(body["authenticationKey"])

    scope = dps_info(hub)["idScope"]
    token = tpm.sas(f"{scope}/registrations/{rid}", "registration")
    started = put_register(hub, rid, keys_of(tpm), token)
    assert started.status_code == 202, started.text
    operation = started.json()["operationId"]

    def poll():
        r = requests.get(
            f"https://{hub.address}/{scope}/registrations/{rid}/operations/{operation}",
            params={"api-version": API}, headers={"Authorization": token}, timeout=30,
            verify=hub.ca_file)
        assert r.status_code in (200, 202), r.text
        return r.json() if r.status_code == 200 else None

    return wait_for(poll, what=f"{rid}'s registration")


def create_enrollment(dps, rid: str, ek: str) -> dict:
    return dps.enrollment.create_or_update(
        id=rid,
        enrollment={"registrationId": rid, "attestation": {"type": "tpm", "tpm": {"endorsementKey": ek}}},
    )


def test_tpm_device_provisions_and_connects_with_its_tpm_signed_key(hub, tpm, dps):
    rid = "tpm-device-1"
    created = create_enrollment(dps, rid, tpm.ek)
    assert created["attestation"]["type"] == "tpm"
    assert created["attestation"]["tpm"]["endorsementKey"] == tpm.ek
    shown = dps.enrollment.get(id=rid)
    assert shown["attestation"]["tpm"]["endorsementKey"] == tpm.ek

    result = provision(hub, tpm, rid)
    assert result["status"] == "assigned", result
    state = result["registrationState"]
    assert state["assignedHub"] == hub.hostname
    assert state["deviceId"] == rid
    # The hub key comes back sealed to the TPM again, as the Node SDK imports it.
    tpm.import_key(state["tpm"]["authenticationKey"])

    # The hub device's key is the one inside the TPM (the TPM's HMAC is the key's).
    device = hub.registry_manager().get_device(rid)
    key = base64.b64decode(device.authentication.symmetric_key.primary_key)
    assert tpm.hmac(b"probe") == hmac.new(key, b"probe", hashlib.sha256).digest()

    # The device connects to its hub with a token its TPM signed.
    token = tpm.sas(f"{state['assignedHub']}/devices/{rid}")
    with open(hub.ca_file) as f:
        ca = f.read()
    client = IoTHubDeviceClient.create_from_sastoken(token, server_verification_cert=ca)
    try:
        client.connect()
        client.send_message(Message("hello from the TPM"))
    finally:
        client.shutdown()
    wait_for(lambda: "hello from the TPM" in [e["body"] for e in stored_events(hub, rid)],
             what="the TPM device's telemetry")

    # Registering again keeps the device and its key.
    again = provision(hub, tpm, rid)
    assert again["status"] == "assigned", again
    assert tpm.hmac(b"probe") == hmac.new(key, b"probe", hashlib.sha256).digest()


def assert_nothing_created(hub, dps, rid: str) -> None:
    with pytest.raises(ResourceNotFoundError):
        dps.device_registration_state.get(id=rid)
    devices = [d.device_id for d in hub.registry_manager().get_devices()]
    assert rid not in devices


def test_a_tpm_that_is_not_enrolled_is_refused(hub, tpm, dps):
    rid = "tpm-wrong-ek"
    # The enrollment holds another TPM's endorsement key (the SRK's public area stands in).
    create_enrollment(dps, rid, tpm.srk)
    refused = put_register(hub, rid, keys_of(tpm))
    assert refused.status_code == 401, refused.text
    assert "authenticationKey" not in refused.json()
    assert refused.json()["errorCode"] == 401002
    # No enrollment at all: the same answer.
    unknown = put_register(hub, "tpm-nobody", keys_of(tpm))
    assert unknown.status_code == 401
    assert unknown.json()["errorCode"] == 401002
    # An ECC key is not an EK DPS can seal to.
    ecc = base64.b64encode(struct.pack(">HH", 0x0023, 0x000B) + bytes(20)).decode()
    bad = put_register(hub, rid, {"endorsementKey": ecc, "storageRootKey": tpm.srk})
    assert bad.status_code == 400, bad.text
    assert_nothing_created(hub, dps, rid)
    assert_nothing_created(hub, dps, "tpm-nobody")


def test_a_tampered_answer_or_a_wrong_signature_is_refused(hub, tpm, dps):
    rid = "tpm-tampered"
    create_enrollment(dps, rid, tpm.ek)
    challenge = put_register(hub, rid, keys_of(tpm))
    assert challenge.status_code == 401
    blob = bytearray(base64.b64decode(challenge.json()["authenticationKey"]))
    blob[10] ^= 0x01  # inside the credential's encrypted part: its integrity HMAC fails
    with pytest.raises(TpmError, match="tpm2_activatecredential"):
        tpm.import_key(base64.b64encode(bytes(blob)).decode())

    # A token that is not signed with the challenge's key (here: a key of the wrong device's).
    tpm.import_key(challenge.json()["authenticationKey"])
    scope = dps_info(hub)["idScope"]
    wrong = tpm.sas(f"{scope}/registrations/tpm-device-other", "registration")
    forged = wrong.replace("tpm-device-other", rid)
    refused = put_register(hub, rid, keys_of(tpm), forged)
    assert refused.status_code == 401, refused.text
    assert_nothing_created(hub, dps, rid)


def test_node_service_sdk_and_cli_create_tpm_enrollments(hub, tpm):
    from test_dps_node import node_ok, node_sdks  # noqa: F401  (the Node SDKs must be there)

    if shutil.which("node") is None:
        pytest.fail("`node` is not installed: run the suite through scripts/test", pytrace=False)
    created = node_ok(hub, "service", "createOrUpdateIndividualEnrollment", json.dumps({
        "registrationId": "tpm-node", "attestation": {"type": "tpm", "tpm": {"endorsementKey": tpm.ek}},
    }))["result"]
    assert created["attestation"]["tpm"]["endorsementKey"] == tpm.ek
    mechanism = node_ok(hub, "service", "getIndividualEnrollmentAttestationMechanism",
                        json.dumps("tpm-node"))["result"]
    assert mechanism == {"type": "tpm", "tpm": {"endorsementKey": tpm.ek}}

    data_dir = str(hub.data_dir)
    run_cli("dps", "enrollment", "create", "--data-dir", data_dir, "--enrollment-id", "tpm-cli",
            "--attestation-type", "tpm", "--endorsement-key", tpm.ek, check=True)
    shown = node_ok(hub, "service", "getIndividualEnrollment", json.dumps("tpm-cli"))["result"]
    assert shown["attestation"] == {"type": "tpm", "tpm": {"endorsementKey": tpm.ek}}
    result = provision(hub, tpm, "tpm-cli")
    assert result["status"] == "assigned", result
