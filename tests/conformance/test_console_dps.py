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

from azure.iot.device import ProvisioningDeviceClient

from console_helpers import add_dps_policy, drive as drive_script
from dps_helpers import derive, dps_info, dps_rest, make_root, make_self_signed, make_signed

IRONHUB_ADDRESS = "127.0.0.80"
READER_KEY = "cmVhZGVyIGtleSBmb3IgdGhlIGNvbnNvbGUgdGVzdA=="


def drive(hub, tmp_path, mode: str, connection_string: str, answer) -> dict:
    """Runs console_dps.js in `mode`, answering its waits with `answer(step, msg)`."""
    return drive_script("console_dps.js", [f"https://{hub.hostname}", str(tmp_path), mode],
                        {"IRONHUB_DPS_CONNECTION_STRING": connection_string}, answer)


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
