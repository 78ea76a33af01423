"""The az-style DPS CLI (`ironhub dps …`, mirroring `az iot dps …`), run as a user runs it,
against a running server, with real devices: what the CLI creates, the Python device SDK's
`ProvisioningDeviceClient` registers with.

The CLI logs in from the server's data directory (`--data-dir`) or with `--login "<DPS
connection string>" --cafile ca.pem`, and talks to the DPS service REST API only. Its output is
JSON on stdout, as az prints it; errors go to stderr with exit code 1.
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
from pathlib import Path

import pytest
from azure.iot.device import ProvisioningDeviceClient, X509

from conftest import ironhub_bin, require_tool
from dps_helpers import derive, dps_info, error_chain, make_root, make_signed, sha1_thumbprint

IRONHUB_ADDRESS = "127.0.0.20"
TIMEOUT_S = 30

VIAS = ["data-dir", "login"]


def clean_env() -> dict:
    return {k: v for k, v in os.environ.items() if not k.startswith("IRONHUB_")}


def run(hub, via: str, *args: str) -> subprocess.CompletedProcess:
    """`ironhub dps <args>` logged in `via` "data-dir", "login" or "none", from the module's
    work directory and with no IRONHUB_* variables, so nothing is picked up by accident."""
    if via == "data-dir":
        login = ["--data-dir", str(hub.data_dir)]
    elif via == "login":
        login = ["--login", dps_info(hub)["serviceConnectionString"], "--cafile", hub.ca_file]
    elif via == "none":
        login = []
    else:
        raise ValueError(via)
    return subprocess.run(
        [ironhub_bin(), "dps", *args, *login],
        capture_output=True,
        text=True,
        timeout=TIMEOUT_S,
        stdin=subprocess.DEVNULL,
        env=clean_env(),
        cwd=str(hub.workdir),
    )


def ok(proc: subprocess.CompletedProcess) -> str:
    assert proc.returncode == 0, (
        f"`{' '.join(proc.args[1:])}` exited with {proc.returncode}\n"
        f"stdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"
    )
    return proc.stdout


def ok_json(proc: subprocess.CompletedProcess):
    out = ok(proc)
    try:
        return json.loads(out)
    except json.JSONDecodeError as e:
        raise AssertionError(f"stdout is not JSON ({e}):\n{out}\nstderr:\n{proc.stderr}")


def fails(proc: subprocess.CompletedProcess, mentions: tuple[str, ...]) -> None:
    """The command ran and failed with exit code 1 (not clap's usage error 2), printing nothing
    on stdout and saying why on stderr."""
    cmd = " ".join(proc.args[1:])
    assert proc.returncode == 1, f"`{cmd}`: expected exit 1, got {proc.returncode}:\n{proc.stdout}{proc.stderr}"
    assert proc.stdout == "", f"`{cmd}`: a failure prints nothing on stdout:\n{proc.stdout}"
    low = proc.stderr.lower()
    assert any(m.lower() in low for m in mentions), f"`{cmd}`: stderr should mention one of {mentions}:\n{proc.stderr}"


def ca_pem(hub) -> str:
    return Path(hub.ca_file).read_text()


def provision_with_key(hub, registration_id: str, key: str, websockets: bool = False):
    client = ProvisioningDeviceClient.create_from_symmetric_key(
        provisioning_host=hub.address,
        registration_id=registration_id,
        id_scope=dps_info(hub)["idScope"],
        symmetric_key=key,
        server_verification_cert=ca_pem(hub),
        websockets=websockets,
    )
    return client.register()


@pytest.mark.parametrize("via", VIAS)
def test_cli_enrollment_provisions_a_real_device(hub, rm, via):
    rid = f"cli-enrollment-{via}"
    created = ok_json(run(
        hub, via, "enrollment", "create", "--enrollment-id", rid, "--attestation-type", "symmetricKey",
        "--initial-twin-tags", "{'site': 'lab'}", "--initial-twin-properties", '{"fw": "1.0"}',
    ))
    assert created["registrationId"] == rid
    assert created["provisioningStatus"] == "enabled"
    key = created["attestation"]["symmetricKey"]["primaryKey"]
    assert len(base64.b64decode(key)) == 64, "DPS generates the keys az leaves out"

    # `show` hides the keys, as DPS does; `--show-keys` reads them.
    shown = ok_json(run(hub, via, "enrollment", "show", "--eid", rid))
    assert shown["attestation"] == {"type": "symmetricKey", "symmetricKey": {}}
    with_keys = ok_json(run(hub, via, "enrollment", "show", "--eid", rid, "--show-keys"))
    assert with_keys["attestation"]["symmetricKey"]["primaryKey"] == key
    assert rid in [e["registrationId"] for e in ok_json(run(hub, via, "enrollment", "list"))]

    # A real device provisions with the CLI-made enrollment and gets its initial twin.
    result = provision_with_key(hub, rid, key, websockets=(via == "login"))
    assert result.status == "assigned"
    assert result.registration_state.assigned_hub == hub.hostname
    assert result.registration_state.device_id == rid
    assert rm.get_device(rid).authentication.symmetric_key.primary_key == key
    twin = rm.get_twin(rid)
    assert twin.tags == {"site": "lab"}
    assert twin.properties.desired["fw"] == "1.0"

    registration = ok_json(run(hub, via, "enrollment", "registration", "show", "--eid", rid))
    assert registration["status"] == "assigned"
    assert registration["assignedHub"] == hub.hostname

    # Disabled with the CLI, the enrollment refuses the device: it ends 'disabled'.
    updated = ok_json(run(hub, via, "enrollment", "update", "--eid", rid, "--provisioning-status", "disabled"))
    assert updated["provisioningStatus"] == "disabled"
    assert updated["attestation"]["symmetricKey"]["primaryKey"] == key, "an update keeps the keys"
    assert updated["etag"] != created["etag"]
    with pytest.raises(Exception) as refused:
        provision_with_key(hub, rid, key)
    assert "disabled" in error_chain(refused.value)
    assert ok_json(run(hub, via, "enrollment", "registration", "show", "--eid", rid))["status"] == "disabled"

    assert ok(run(hub, via, "enrollment", "registration", "delete", "--eid", rid)) == ""
    fails(run(hub, via, "enrollment", "registration", "show", "--eid", rid), ("does not exist",))
    fails(run(hub, via, "enrollment", "delete", "--eid", rid, "--etag", created["etag"]), ("412", "precondition"))
    assert ok(run(hub, via, "enrollment", "delete", "--eid", rid)) == ""
    fails(run(hub, via, "enrollment", "show", "--eid", rid), ("404201", "does not exist"))


def test_compute_device_key_matches_the_derivation_and_the_device_provisions(hub, rm, tmp_path):
    gid = "cli-group"
    group = ok_json(run(hub, "data-dir", "enrollment-group", "create", "--gid", gid, "--tags", '{"fleet": "cli"}'))
    group_key = group["attestation"]["symmetricKey"]["primaryKey"]
    assert ok_json(run(hub, "login", "enrollment-group", "show", "--gid", gid, "--keys"))[
        "attestation"]["symmetricKey"]["primaryKey"] == group_key

    rid = "cli-group-dev-1"
    expected = derive(group_key, rid)
    # Offline: no login, no data directory (an empty working directory), only the key.
    empty = tmp_path / "empty"
    empty.mkdir()
    offline = subprocess.run(
        [ironhub_bin(), "dps", "enrollment-group", "compute-device-key", "--key", group_key, "--rid", rid],
        capture_output=True, text=True, timeout=TIMEOUT_S, env=clean_env(), cwd=str(empty),
    )
    assert json.loads(ok(offline)) == expected
    # az's deprecated top-level form, and the online form that reads the group's key.
    assert ok_json(run(hub, "none", "compute-device-key", "--symmetric-key", group_key,
                       "--registration-id", rid)) == expected
    for via in VIAS:
        assert ok_json(run(hub, via, "enrollment-group", "compute-device-key", "--gid", gid, "--rid", rid)) == expected

    result = provision_with_key(hub, rid, expected, websockets=True)
    assert result.status == "assigned"
    assert result.registration_state.device_id == rid
    assert rm.get_twin(rid).tags == {"fleet": "cli"}

    listed = ok_json(run(hub, "login", "enrollment-group", "registration", "list", "--gid", gid))
    assert [r["registrationId"] for r in listed] == [rid]
    assert ok_json(run(hub, "data-dir", "registration", "list", "--eid", gid)) == listed
    shown = ok_json(run(hub, "data-dir", "enrollment-group", "registration", "show", "--rid", rid))
    assert shown["status"] == "assigned" and shown["assignedHub"] == hub.hostname
    assert ok(run(hub, "data-dir", "registration", "delete", "--registration-id", rid)) == ""
    assert ok_json(run(hub, "data-dir", "enrollment-group", "registration", "list", "--gid", gid)) == []

    # The raw group key is no device key.
    with pytest.raises(Exception) as refused:
        provision_with_key(hub, "cli-group-raw", group_key)
    assert "status code 401" in error_chain(refused.value)


def test_certificate_proof_of_possession_then_an_x509_group_device(hub, rm, tmp_path):
    require_tool("openssl")
    make_root(tmp_path, "root", "CLI Root CA")
    created = ok_json(run(hub, "data-dir", "certificate", "create", "--certificate-name", "cli-root",
                          "--path", str(tmp_path / "root.pem")))
    assert created["name"] == "cli-root"
    assert created["properties"]["isVerified"] is False
    assert "CN=CLI Root CA" in created["properties"]["subject"]
    fails(run(hub, "data-dir", "certificate", "create", "-n", "cli-root", "-p", str(tmp_path / "root.pem")),
          ("409", "exists"))
    assert "cli-root" in [c["name"] for c in ok_json(run(hub, "login", "certificate", "list"))["value"]]

    coded = ok_json(run(hub, "data-dir", "certificate", "generate-verification-code", "-n", "cli-root",
                        "-e", created["etag"]))
    code = coded["properties"]["verificationCode"]
    assert code and coded["etag"] != created["etag"]
    make_signed(tmp_path, "proof", code, "root")
    fails(run(hub, "data-dir", "certificate", "verify", "-n", "cli-root", "-p", str(tmp_path / "proof.pem"),
              "-e", created["etag"]), ("412", "precondition"))
    make_signed(tmp_path, "wrong", "not-the-code", "root")
    fails(run(hub, "data-dir", "certificate", "verify", "-n", "cli-root", "-p", str(tmp_path / "wrong.pem")),
          ("400", "verification"))
    verified = ok_json(run(hub, "data-dir", "certificate", "verify", "-n", "cli-root",
                           "-p", str(tmp_path / "proof.pem"), "-e", coded["etag"]))
    assert verified["properties"]["isVerified"] is True
    assert ok_json(run(hub, "login", "certificate", "show", "-n", "cli-root"))["properties"]["isVerified"] is True

    # A group that names the verified CA admits a device whose certificate it signed.
    group = ok_json(run(hub, "data-dir", "enrollment-group", "create", "--gid", "cli-x509", "--root-ca-name", "cli-root"))
    assert group["attestation"] == {"type": "x509", "x509": {"caReferences": {"primary": "cli-root"}}}
    rid = "cli-x509-dev"
    make_signed(tmp_path, rid, rid, "root")
    client = ProvisioningDeviceClient.create_from_x509_certificate(
        provisioning_host=hub.address,
        registration_id=rid,
        id_scope=dps_info(hub)["idScope"],
        x509=X509(cert_file=str(tmp_path / f"{rid}.pem"), key_file=str(tmp_path / f"{rid}.key")),
        server_verification_cert=ca_pem(hub),
    )
    result = client.register()
    assert result.status == "assigned"
    assert result.registration_state.device_id == rid
    # DPS registers X.509 devices in their hub by the device certificate's thumbprint.
    device = rm.get_device(rid)
    assert device.authentication.type == "selfSigned"
    assert device.authentication.x509_thumbprint.primary_thumbprint == sha1_thumbprint(tmp_path / f"{rid}.pem")
    assert [r["registrationId"] for r in ok_json(run(hub, "data-dir", "enrollment-group", "registration",
                                                     "list", "--gid", "cli-x509"))] == [rid]

    ok(run(hub, "data-dir", "enrollment-group", "delete", "--gid", "cli-x509"))
    fails(run(hub, "data-dir", "certificate", "delete", "-n", "cli-root", "-e", "stale"), ("412", "precondition"))
    assert ok(run(hub, "data-dir", "certificate", "delete", "-n", "cli-root", "-e", verified["etag"])) == ""
    assert "cli-root" not in [c["name"] for c in ok_json(run(hub, "data-dir", "certificate", "list"))["value"]]


@pytest.mark.parametrize("via", VIAS)
def test_linked_hub_list_shows_the_own_hub_with_its_key_masked(hub, via):
    host = hub.connection_string_parts()["HostName"]
    secret = hub.connection_string_parts()["SharedAccessKey"]
    out = ok(run(hub, via, "linked-hub", "list"))
    assert secret not in out, "the hub's key must never be printed"
    [own] = json.loads(out)
    assert own["name"] == hub.hostname
    assert own["connectionString"] == f"HostName={host};SharedAccessKeyName=iothubowner;SharedAccessKey=****"
    table = ok(run(hub, via, "linked-hub", "list", "-o", "table")).splitlines()
    assert {"ConnectionString", "Name"} <= set(table[0].split()), table
    assert hub.hostname in table[2] and "SharedAccessKey=****" in table[2]
    shown = ok_json(run(hub, via, "linked-hub", "show", "--linked-hub", hub.hostname))
    assert shown["name"] == own["name"] and shown["connectionString"] == own["connectionString"]


def test_linked_hub_update_changes_only_what_it_names(hub):
    weighted = ok_json(run(hub, "data-dir", "linked-hub", "update", "--linked-hub", hub.hostname,
                           "--allocation-weight", "7", "--location", "lab"))
    assert weighted["allocationWeight"] == 7 and weighted["location"] == "lab"
    again = ok_json(run(hub, "login", "linked-hub", "update", "--linked-hub", hub.hostname,
                        "--apply-allocation-policy", "true"))
    assert again["allocationWeight"] == 7 and again["location"] == "lab" and again["applyAllocationPolicy"] is True
    # Still the link devices are assigned through.
    rid = "cli-after-update"
    created = ok_json(run(hub, "data-dir", "enrollment", "create", "--eid", rid, "--at", "SymmetricKey"))
    result = provision_with_key(hub, rid, created["attestation"]["symmetricKey"]["primaryKey"])
    assert result.status == "assigned" and result.registration_state.assigned_hub == hub.hostname


@pytest.mark.parametrize("via", VIAS)
def test_connection_string_show(hub, via):
    login = dps_info(hub)["serviceConnectionString"]
    assert ok_json(run(hub, via, "connection-string", "show")) == {"connectionString": login}
    if via == "data-dir":
        secondary = ok_json(run(hub, via, "connection-string", "show", "--key-type", "secondary"))
        parts = dict(p.split("=", 1) for p in secondary["connectionString"].split(";"))
        assert parts["SharedAccessKeyName"] == "provisioningserviceowner"
        assert parts["SharedAccessKey"] != dict(p.split("=", 1) for p in login.split(";"))["SharedAccessKey"]
    else:
        fails(run(hub, via, "connection-string", "show", "--kt", "secondary"), ("--data-dir",))


def test_the_hub_login_is_not_a_dps_login(hub):
    proc = subprocess.run(
        [ironhub_bin(), "dps", "enrollment", "list", "--login", hub.connection_string, "--cafile", hub.ca_file],
        capture_output=True, text=True, timeout=TIMEOUT_S, env=clean_env(), cwd=str(hub.workdir),
    )
    fails(proc, ("provisioningserviceowner",))
    # IRONHUB_DPS_CONNECTION_STRING is the DPS login; IRONHUB_CONNECTION_STRING is the hub's.
    env = clean_env() | {"IRONHUB_DPS_CONNECTION_STRING": dps_info(hub)["serviceConnectionString"],
                         "IRONHUB_CONNECTION_STRING": hub.connection_string, "SSL_CERT_FILE": hub.ca_file}
    proc = subprocess.run([ironhub_bin(), "dps", "enrollment-group", "list"], capture_output=True, text=True,
                          timeout=TIMEOUT_S, env=env, cwd=str(hub.workdir))
    assert isinstance(json.loads(ok(proc)), list)
