"""The web console's DPS pages (`/console/dps`), driven in headless Chromium by
`node/console_dps.js` (playwright-core), with the Python device SDK on the device side: sign-in
with the DPS service connection string; an enrollment group with generated keys made through
the form; a device key computed on the group's page, with which `ProvisioningDeviceClient`
registers, and its registration shown on the page; an individual enrollment with an X.509
device certificate; a DPS CA certificate uploaded and verified (proof of possession); bad input
(an invalid id, malformed initial-twin JSON, a bad key) refused beside its field with nothing
written; screenshots at a phone's and a desktop's width with no horizontal overflow. Then a DPS
policy with only EnrollmentRead: it reads, sees no write controls, and its forged posts are
refused.
"""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess

from azure.iot.device import ProvisioningDeviceClient

from conftest import NODE_DIR, require_tool
from dps_helpers import derive, dps_info, dps_rest, make_root, make_self_signed, make_signed

IRONHUB_ADDRESS = "127.0.0.80"
CHROMIUM = "/usr/bin/chromium"
READER_KEY = "cmVhZGVyIGtleSBmb3IgdGhlIGNvbnNvbGUgdGVzdA=="


def drive(hub, tmp_path, mode: str, connection_string: str, answer) -> dict:
    """Runs console_dps.js in `mode`, answering its waits with `answer(step, msg)`."""
    require_tool("node")
    require_tool(CHROMIUM.rsplit("/", 1)[1])
    env = {"IRONHUB_DPS_CONNECTION_STRING": connection_string, "CHROMIUM": CHROMIUM}
    proc = subprocess.Popen(
        ["node", str(NODE_DIR / "console_dps.js"), f"https://{hub.hostname}", str(tmp_path), mode],
        cwd=NODE_DIR, env=dict(os.environ, **env), stdin=subprocess.PIPE, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True,
    )
    result = None
    try:
        for line in proc.stdout:
            if not line.startswith("{"):
                continue
            msg = json.loads(line)
            step = msg.get("wait")
            if step is None:
                result = msg
                break
            proc.stdin.write(json.dumps(answer(step, msg)) + "\n")
            proc.stdin.flush()
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert result is not None, f"console_dps.js gave no result\n{proc.stderr.read()[-6000:]}"
    assert "error" not in result, f"{result}\n{proc.stderr.read()[-6000:]}"
    return result


def test_console_dps_end_to_end(hub, tmp_path):
    info = dps_info(hub)
    ca_pem = open(hub.ca_file).read()

    def answer(step, msg):
        if step == "derived":
            # The page's key is the group key's derivation, and the device SDK provisions with it.
            group = dps_rest(hub, "POST", "/enrollmentGroups/console-group/attestationmechanism").json()
            assert msg["key"] == derive(group["symmetricKey"]["primaryKey"], msg["registrationId"])
            client = ProvisioningDeviceClient.create_from_symmetric_key(
                provisioning_host=hub.address, registration_id=msg["registrationId"],
                id_scope=info["idScope"], symmetric_key=msg["key"], server_verification_cert=ca_pem,
            )
            assert client.register().status == "assigned"
            return {}
        if step == "x509":
            make_self_signed(tmp_path, "x509-dev", "console-x509")
            return {"certificate": (tmp_path / "x509-dev.pem").read_text(), "registrationId": "console-x509"}
        if step == "ca":
            make_root(tmp_path, "console-root", "Console Root")
            return {"ca": (tmp_path / "console-root.pem").read_text(), "name": "console-root"}
        if step == "code":
            make_signed(tmp_path, "console-proof", msg["code"], "console-root")
            return {"proof": (tmp_path / "console-proof.pem").read_text()}
        raise AssertionError(f"unknown step {step}")

    result = drive(hub, tmp_path, "owner", info["serviceConnectionString"], answer)

    assert result["anonymousRedirect"].endswith("/console/dps/signin")
    assert result["idScope"] == info["idScope"]
    assert result["keyMasked"]
    assert result["cookie"]["httpOnly"] and result["cookie"]["secure"] and result["cookie"]["sameSite"] == "Strict"
    assert result["headers"]["xfo"] == "DENY"
    assert "frame-ancestors 'none'" in result["headers"]["csp"]
    assert result["noCsrfStatus"] == 403
    assert result["badIdStatus"] == 400
    assert "bad id!" in result["badIdMessage"], result["badIdMessage"]
    assert result["badTwinStatus"] == 400 and "initial twin" in result["badTwinMessage"], result["badTwinMessage"]
    assert result["badKeyStatus"] == 400 and "primary key" in result["badKeyMessage"], result["badKeyMessage"]
    assert result["groupKeyMasked"]
    assert "console-dev-1" in result["registrationShown"] and "assigned" in result["registrationShown"]
    assert result["x509Attestation"] == "x509"
    assert result["verified"] == "yes"
    assert len(result["fits"]) == 12 and all(result["fits"].values()), result["fits"]
    for name in ("overview", "groups", "group", "enrollments", "enrollment", "certificates"):
        for width in ("phone", "desktop"):
            assert (tmp_path / f"dps-{name}-{width}.png").stat().st_size > 0

    # What the service API holds: the accepted writes, and nothing of the refused ones.
    for refused in ("bad-twin-group", "bad-key-group", "csrf-group"):
        assert dps_rest(hub, "GET", f"/enrollmentGroups/{refused}").status_code == 404
    group = dps_rest(hub, "GET", "/enrollmentGroups/console-group").json()
    assert group["attestation"]["type"] == "symmetricKey"
    assert group["initialTwin"]["tags"] == {"site": "lab"}
    assert group["allocationPolicy"] == "hashed"
    enrollment = dps_rest(hub, "GET", "/enrollments/console-x509").json()
    assert enrollment["attestation"]["x509"]["clientCertificates"]["primary"]["info"]["subjectName"] == "CN=console-x509"
    certificate = dps_rest(hub, "GET", "/dps/certificates/console-root").json()
    assert certificate["properties"]["isVerified"] is True


def add_dps_policy(hub, name: str, key: str, rights: str) -> None:
    """Adds a DPS shared access policy in the stopped server's store (ironhub has no command
    for DPS policies yet; Azure's is `az iot dps policy create`)."""
    db = sqlite3.connect(hub.data_dir / "ironhub.db")
    try:
        (text,) = db.execute("SELECT value FROM meta WHERE key = 'dps'").fetchone()
        settings = json.loads(text)
        owner = settings["policies"][0]
        settings["policies"].append({**owner, "keyName": name, "primaryKey": key, "secondaryKey": key, "rights": rights})
        db.execute("UPDATE meta SET value = ? WHERE key = 'dps'", (json.dumps(settings),))
        db.commit()
    finally:
        db.close()


def test_a_read_only_dps_policy_sees_no_write_controls(hub, tmp_path):
    hub.stop()
    add_dps_policy(hub, "enrollmentread", READER_KEY, "EnrollmentRead")
    hub.start()
    cs = f"HostName={hub.hostname};SharedAccessKeyName=enrollmentread;SharedAccessKey={READER_KEY}"
    result = drive(hub, tmp_path, "reader", cs, lambda step, msg: {})
    assert result["readerListed"] == 1
    assert result["readerCreate"] == 0
    assert result["readerControls"] == 0
    assert result["forgedDeleteStatus"] == 401
    assert result["forgedCreateStatus"] == 401
    assert dps_rest(hub, "GET", "/enrollmentGroups/console-group").status_code == 200
    assert dps_rest(hub, "GET", "/enrollmentGroups/forged-group").status_code == 404
