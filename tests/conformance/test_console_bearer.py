"""The web console's sign-in with a bearer token (Azure docs, "Control access to IoT Hub by
using Microsoft Entra ID"), hub and DPS, driven in headless Chromium by
`node/console_bearer.js` (playwright-core).

The test is its own identity provider (`oidc_issuer.py`) and the server runs with
`disableLocalAuth`, so the hub's and DPS's policies are refused at sign-in with the REST API's
words while tokens sign in: a contributor token creates a device and sees it listed; a reader
token sees no write controls, and its forged posts are refused by the server; an expired token,
a token for another audience and a token signed by a key the issuer never published are refused
beside the field with no session; a token that lives seconds gives a session that ends with it
(the server stops taking the cookie, polled with a bound); a DPS-audience token with the DPS
contributor role creates an enrollment group. Screenshots at a phone's and a desktop's width.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
import uuid

import pytest
import requests

from conftest import NODE_DIR, require_tool, test_address
from dps_helpers import dps_info
from oidc_issuer import DPS_AUDIENCE, HUB_AUDIENCE, OTHER_KEY, Issuer

IRONHUB_ADDRESS = test_address("127.0.0.81")
CHROMIUM = "/usr/bin/chromium"
TIMEOUT_S = 30
# The short-lived token's lifetime: long enough to sign in, short enough to wait out.
SHORT_LIFETIME_S = 8
ISSUER = Issuer(IRONHUB_ADDRESS)
CONTRIBUTOR_OID = str(uuid.uuid4())


@pytest.fixture(scope="module", autouse=True)
def issuer():
    with ISSUER.serving():
        yield


def ironhub_args(workdir):
    return ISSUER.serve_args(workdir, disable_local_auth=True)


def rest(hub, method, path, jwt, api="2021-04-12", **kwargs):
    return requests.request(method, f"https://{hub.hostname}{path}", params={"api-version": api},
                            headers={"Authorization": f"Bearer {jwt}"}, verify=hub.ca_file,
                            timeout=TIMEOUT_S, **kwargs)


def drive(hub, tmp_path, tokens: dict) -> dict:
    require_tool("node")
    require_tool(CHROMIUM.rsplit("/", 1)[1])
    env = {
        "IRONHUB_TOKENS": json.dumps(tokens),
        "IRONHUB_CONNECTION_STRING": hub.connection_string,
        "IRONHUB_DPS_CONNECTION_STRING": dps_info(hub)["serviceConnectionString"],
        "CHROMIUM": CHROMIUM,
    }
    proc = subprocess.run(
        ["node", str(NODE_DIR / "console_bearer.js"), f"https://{hub.hostname}", str(tmp_path)],
        cwd=NODE_DIR, env=dict(os.environ, **env), capture_output=True, text=True, timeout=240,
        stdin=subprocess.DEVNULL,
    )
    lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
    assert lines, f"console_bearer.js gave no result\n{proc.stderr[-6000:]}"
    result = json.loads(lines[-1])
    assert "error" not in result, f"{result}\n{proc.stderr[-6000:]}"
    return result


def test_console_signs_in_with_bearer_tokens(hub, tmp_path):
    contributor = ISSUER.token(["IoT Hub Data Contributor"], oid=CONTRIBUTOR_OID)
    reader = ISSUER.token(["IoT Hub Data Reader"])
    tokens = {
        "contributor": contributor,
        "reader": reader,
        "expired": ISSUER.token(["IoT Hub Data Contributor"], lifetime=-120),
        "otherAudience": ISSUER.token(["IoT Hub Data Contributor"], audience="https://management.azure.com"),
        "unknownKey": ISSUER.token(["IoT Hub Data Contributor"], key=OTHER_KEY, kid="rotated-away"),
        "dps": ISSUER.token(["Device Provisioning Service Data Contributor"], audience=DPS_AUDIENCE),
    }
    short_exp = int(time.time()) + SHORT_LIFETIME_S
    tokens["short"] = ISSUER.token(["IoT Hub Data Reader"], lifetime=SHORT_LIFETIME_S)
    result = drive(hub, tmp_path, tokens)

    # Local authentication is off: policies are refused with the REST API's message.
    for status, message in (("policyStatus", "policyMessage"), ("dpsPolicyStatus", "dpsPolicyMessage")):
        assert result[status] == 401, result
        assert "local authentication (shared access policies) is disabled" in result[message], result[message]

    # Bad tokens: a message beside the field, no session.
    bad = result["badTokens"]
    assert all(b["status"] == 401 for b in bad.values()), bad
    assert "ExpiredSignature" in bad["expired"]["message"] or "expired" in bad["expired"]["message"].lower(), bad
    assert "InvalidAudience" in bad["otherAudience"]["message"], bad
    assert "signing key is not one of the issuer's" in bad["unknownKey"]["message"], bad
    assert result["refusedCookies"] == [], result["refusedCookies"]

    # The contributor: who it is, a secure HTTP-only cookie that ends with the token, the token
    # never in a page; the device it created is in the registry.
    assert CONTRIBUTOR_OID in result["contributorWho"], result["contributorWho"]
    assert "IoT Hub Data Contributor" in result["contributorWho"], result["contributorWho"]
    assert "IoT Hub Data Contributor" in result["contributorNav"], result["contributorNav"]
    assert not result["tokenInPage"]
    assert not result["cookieHoldsToken"]
    cookie = result["cookie"]
    assert cookie["httpOnly"] and cookie["secure"] and cookie["sameSite"] == "Strict", cookie
    assert cookie["expires"] <= time.time() + 600 + 5, cookie
    assert result["contributorListed"] == 1
    got = rest(hub, "GET", "/devices/bearer-dev", contributor)
    assert got.status_code == 200 and got.json()["deviceId"] == "bearer-dev", got.text

    # The reader: lists, sees no write control, and the server refuses its forged posts.
    assert "IoT Hub Data Reader" in result["readerWho"], result["readerWho"]
    assert result["readerListed"] == 1
    assert result["readerCreate"] == 0
    assert result["readerControls"] == 0
    assert result["forgedDeleteStatus"] == 401
    assert result["forgedCreateStatus"] == 401
    assert rest(hub, "GET", "/devices/bearer-dev", reader).status_code == 200
    assert rest(hub, "GET", "/devices/forged-dev", reader).status_code == 404

    # The short-lived token: the cookie expires with it, and the server stops taking the
    # session once it is over (a redirect to the sign-in), within a bounded poll.
    assert abs(result["shortCookieExpires"] - short_exp) <= 2, (result["shortCookieExpires"], short_exp)
    assert result["shortFirstStatus"] == 200, result
    ended = result["shortEnded"]
    assert ended["status"] == 303 and ended["location"] == "/console/signin", ended
    assert ended["at"] >= short_exp - 1, (ended, short_exp)
    assert result["shortRedirect"].endswith("/console/signin"), result["shortRedirect"]

    # DPS: a DPS-audience token with the DPS contributor role created an enrollment group.
    assert "Device Provisioning Service Data Contributor" in result["dpsWho"], result["dpsWho"]
    group = rest(hub, "GET", "/enrollmentGroups/bearer-group", tokens["dps"], api="2021-10-01")
    assert group.status_code == 200 and group.json()["enrollmentGroupId"] == "bearer-group", group.text

    assert all(result["fits"].values()), result["fits"]
    for name in ("signin-refused", "signin-token-error", "bearer-overview", "bearer-devices", "bearer-device",
                 "bearer-dps-overview", "bearer-dps-group"):
        for width in ("phone", "desktop"):
            assert (tmp_path / f"{name}-{width}.png").stat().st_size > 0
