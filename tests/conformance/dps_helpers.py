"""Helpers the DPS conformance modules share: SAS tokens, key derivation, reading a hub's
event stream, and certificates made with openssl."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import subprocess
import time
import urllib.parse
from pathlib import Path

import requests

WAIT_S = 20.0


def sas(resource: str, key: str, policy: str | None = None, ttl: int = 3600,
        encode=lambda s: urllib.parse.quote(s, safe="")) -> str:
    """A SAS token as the SDKs make it (`encode` decides how `sr` is transmitted)."""
    sr = encode(resource)
    se = str(int(time.time()) + ttl)
    sig = base64.b64encode(
        hmac.new(base64.b64decode(key), f"{sr}\n{se}".encode(), hashlib.sha256).digest()
    ).decode()
    token = f"SharedAccessSignature sr={sr}&sig={urllib.parse.quote(sig, safe='')}&se={se}"
    return token + (f"&skn={policy}" if policy else "")


def derive(group_key: str, registration_id: str) -> str:
    """An enrollment group device's key: base64(HMAC-SHA256(group key, registration id))."""
    return base64.b64encode(
        hmac.new(base64.b64decode(group_key), registration_id.encode(), hashlib.sha256).digest()
    ).decode()


def new_key() -> str:
    import os

    return base64.b64encode(os.urandom(32)).decode()


def stored_events(hub, device_id: str) -> list:
    """Every event of a device in a hub's event log, read through its REST event stream."""
    parts = hub.connection_string_parts()
    auth = sas(hub.hostname, parts["SharedAccessKey"], parts["SharedAccessKeyName"])
    with requests.get(
        f"https://{hub.address}/events/consumergroups/$Default/stream",
        params={"from": "start", "deviceId": device_id, "timeout": "1", "api-version": "2021-04-12"},
        headers={"Authorization": auth}, stream=True, timeout=30, verify=hub.ca_file,
    ) as response:
        assert response.status_code == 200, response.text
        return [json.loads(line) for line in response.iter_lines() if line]


def wait_for(predicate, timeout=WAIT_S, what="condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def error_chain(e: BaseException) -> str:
    """An exception with its causes, as one text (the SDKs wrap service errors)."""
    parts = []
    while e is not None:
        parts.append(f"{type(e).__name__}: {e}")
        e = e.__cause__ or e.__context__
    return " <- ".join(parts)


def dps_info(hub) -> dict:
    return hub.info["dps"]


def dps_service_key(hub) -> str:
    cs = dps_info(hub)["serviceConnectionString"]
    return dict(p.split("=", 1) for p in cs.split(";") if p)["SharedAccessKey"]


def dps_rest(hub, method: str, path: str, body=None, headers=None):
    """A DPS service REST call signed with the provisioningserviceowner policy."""
    token = sas(hub.hostname, dps_service_key(hub), "provisioningserviceowner")
    h = {"Authorization": token, **(headers or {})}
    return requests.request(
        method, f"https://{hub.address}{path}", params={"api-version": "2021-10-01"},
        json=body, headers=h, timeout=30, verify=hub.ca_file,
    )


def upload_verified_ca(hub, name: str, tmp: Path, ca: str) -> None:
    """Uploads `{ca}.pem` to the DPS instance and proves possession of its key, as `az iot
    dps certificate create/generate-verification-code/verify` does."""
    pem = (tmp / f"{ca}.pem").read_text()
    r = dps_rest(hub, "PUT", f"/dps/certificates/{name}", {"properties": {"certificate": pem}})
    assert r.status_code == 201, r.text
    assert r.json()["properties"]["isVerified"] is False
    r = dps_rest(hub, "POST", f"/dps/certificates/{name}/generateVerificationCode",
                 headers={"If-Match": r.json()["etag"]})
    assert r.status_code == 200, r.text
    code = r.json()["properties"]["verificationCode"]
    make_signed(tmp, f"{name}-proof", code, ca)
    proof = (tmp / f"{name}-proof.pem").read_text()
    r = dps_rest(hub, "POST", f"/dps/certificates/{name}/verify", {"certificate": proof},
                 headers={"If-Match": r.json()["etag"]})
    assert r.status_code == 200, r.text
    assert r.json()["properties"]["isVerified"] is True


def openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


V3_CLIENT = "basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=clientAuth\n"
V3_CA = "basicConstraints=critical,CA:TRUE\nkeyUsage=critical,keyCertSign,cRLSign\n"


def make_root(tmp: Path, name: str, cn: str) -> None:
    """A self-signed root CA: `{name}.pem`, `{name}.key`."""
    openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
            "-keyout", f"{name}.key", "-out", f"{name}.pem", "-days", "30", "-subj", f"/CN={cn}",
            "-addext", "basicConstraints=critical,CA:TRUE",
            "-addext", "keyUsage=critical,keyCertSign,cRLSign", cwd=tmp)


def make_signed(tmp: Path, name: str, cn: str, issuer: str, ca: bool = False) -> None:
    """A certificate `{name}.pem`/`{name}.key` with CN `cn`, signed by `{issuer}.pem/.key`."""
    (tmp / f"{name}.ext").write_text(V3_CA if ca else V3_CLIENT)
    openssl("req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
            "-keyout", f"{name}.key", "-out", f"{name}.csr", "-subj", f"/CN={cn}", cwd=tmp)
    openssl("x509", "-req", "-in", f"{name}.csr", "-CA", f"{issuer}.pem", "-CAkey", f"{issuer}.key",
            "-CAcreateserial", "-days", "30", "-extfile", f"{name}.ext", "-out", f"{name}.pem", cwd=tmp)


def make_self_signed(tmp: Path, name: str, cn: str) -> None:
    """A self-signed device certificate (X.509 v3, client auth)."""
    (tmp / f"{name}.ext").write_text(V3_CLIENT)
    openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
            "-keyout", f"{name}.key", "-out", f"{name}.pem", "-days", "30", "-subj", f"/CN={cn}",
            "-addext", "extendedKeyUsage=clientAuth", cwd=tmp)


def sha1_thumbprint(pem_path: Path) -> str:
    out = subprocess.run(["openssl", "x509", "-in", str(pem_path), "-noout", "-fingerprint", "-sha1"],
                         check=True, capture_output=True, text=True).stdout
    return out.strip().split("=", 1)[1].replace(":", "").upper()
