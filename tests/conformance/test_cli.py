"""The az-style CLI (`ironhub hub …`, mirroring `az iot hub …`), run as a user runs it.

The CLI talks to the running server through the Azure REST API, logging in either from the
server's data directory (`--data-dir`) or with `--login "<connection string>" --cafile ca.pem`.
Its output is JSON on stdout, as `az` prints it; errors go to stderr with a non-zero exit code.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import subprocess
import time
import urllib.parse

import pytest

from conftest import ironhub_bin

IRONHUB_ADDRESS = "127.0.0.4"
TIMEOUT_S = 30


def run(hub, via: str, *args: str) -> subprocess.CompletedProcess:
    """`ironhub <args>` logged in `via` "data-dir" or "login", from an empty working directory
    and with no IRONHUB_* variables, so nothing is picked up by accident."""
    if via == "data-dir":
        login = ["--data-dir", str(hub.data_dir)]
    elif via == "login":
        login = ["--login", hub.connection_string, "--cafile", hub.ca_file]
    else:
        raise ValueError(via)
    env = {k: v for k, v in os.environ.items() if not k.startswith("IRONHUB_")}
    return subprocess.run(
        [ironhub_bin(), *args, *login],
        capture_output=True,
        text=True,
        timeout=TIMEOUT_S,
        stdin=subprocess.DEVNULL,
        env=env,
        cwd=str(hub.workdir),
    )


def ok_json(proc: subprocess.CompletedProcess):
    assert proc.returncode == 0, (
        f"`{' '.join(proc.args[1:])}` exited with {proc.returncode}\n"
        f"stdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"
    )
    try:
        return json.loads(proc.stdout)
    except json.JSONDecodeError as e:
        raise AssertionError(f"stdout is not JSON ({e}):\n{proc.stdout}\nstderr:\n{proc.stderr}")


def fails(proc: subprocess.CompletedProcess, mentions: tuple[str, ...] = ()) -> None:
    """The command ran and failed (not a usage error: exit 2 and a `Usage:` text are clap's,
    meaning the command line was not understood), saying why on stderr."""
    cmd = " ".join(proc.args[1:])
    assert proc.returncode != 0, f"`{cmd}`: expected a failure, got exit 0 and stdout:\n{proc.stdout}"
    assert proc.returncode != 2 and "Usage:" not in proc.stderr, (
        f"`{cmd}` was not understood (usage error {proc.returncode}):\n{proc.stderr}"
    )
    assert proc.stderr.strip(), f"`{cmd}`: a failure must say why on stderr"
    if mentions:
        low = proc.stderr.lower()
        assert any(m.lower() in low for m in mentions), (
            f"`{cmd}`: stderr should mention one of {mentions}:\n{proc.stderr}"
        )


def parse_cs(cs: str) -> dict:
    return dict(part.split("=", 1) for part in cs.split(";") if part)


def check_device_sas(token: str, host: str, device_id: str, key: str) -> None:
    """The token is a valid device SAS (docs/protocol/sas-tokens.md) signed with `key`, for
    `device_id`."""
    assert token.startswith("SharedAccessSignature "), token
    fields = dict(p.split("=", 1) for p in token[len("SharedAccessSignature "):].split("&"))
    assert {"sr", "sig", "se"} <= fields.keys(), fields
    assert urllib.parse.unquote(fields["sr"]).lower() == f"{host}/devices/{device_id}".lower(), fields
    assert int(fields["se"]) > time.time() + 60, "the token must not be (nearly) expired"
    expected = hmac.new(
        base64.b64decode(key), f"{fields['sr']}\n{fields['se']}".encode(), hashlib.sha256
    ).digest()
    assert base64.b64decode(urllib.parse.unquote(fields["sig"])) == expected, "bad signature"


@pytest.mark.parametrize("via", ["data-dir", "login"])
def test_device_identity_lifecycle(hub, rm, via):
    device_id = f"cli1-{via}"

    created = ok_json(run(hub, via, "hub", "device-identity", "create", "-d", device_id))
    assert created["deviceId"] == device_id
    primary = created["authentication"]["symmetricKey"]["primaryKey"]
    assert primary and len(base64.b64decode(primary)) >= 16
    assert created.get("status", "enabled") == "enabled"
    # The service SDK sees the same device.
    assert rm.get_device(device_id).authentication.symmetric_key.primary_key == primary

    shown = ok_json(run(hub, via, "hub", "device-identity", "show", "-d", device_id))
    assert shown["deviceId"] == device_id
    assert shown["authentication"]["symmetricKey"]["primaryKey"] == primary

    cs = ok_json(
        run(hub, via, "hub", "device-identity", "connection-string", "show", "-d", device_id)
    )
    parts = parse_cs(cs["connectionString"])
    assert parts == {"HostName": hub.hostname, "DeviceId": device_id, "SharedAccessKey": primary}

    sas = ok_json(run(hub, via, "hub", "generate-sas-token", "-d", device_id))
    check_device_sas(sas["sas"], hub.hostname, device_id, primary)

    listed = ok_json(run(hub, via, "hub", "device-identity", "list"))
    assert isinstance(listed, list)
    assert device_id in {d["deviceId"] for d in listed}

    updated = ok_json(
        run(hub, via, "hub", "device-identity", "update", "-d", device_id, "--status", "disabled")
    )
    assert updated["deviceId"] == device_id
    assert updated["status"] == "disabled"
    assert rm.get_device(device_id).status == "disabled"
    # Updating the status keeps the keys.
    assert updated["authentication"]["symmetricKey"]["primaryKey"] == primary

    deleted = run(hub, via, "hub", "device-identity", "delete", "-d", device_id)
    assert deleted.returncode == 0, deleted.stderr
    assert device_id not in {d.device_id for d in rm.get_devices(1000)}

    gone = run(hub, via, "hub", "device-identity", "show", "-d", device_id)
    fails(gone, mentions=(device_id, "not found", "DeviceNotFound"))
    assert gone.stdout.strip() == ""


@pytest.mark.parametrize("via", ["data-dir", "login"])
def test_missing_device_fails_with_a_message(hub, via):
    for args in (
        ["device-identity", "show", "-d", "nosuch"],
        ["device-identity", "delete", "-d", "nosuch"],
        ["device-identity", "update", "-d", "nosuch", "--status", "disabled"],
        ["device-identity", "connection-string", "show", "-d", "nosuch"],
        ["generate-sas-token", "-d", "nosuch"],
    ):
        proc = run(hub, via, "hub", *args)
        fails(proc, mentions=("nosuch", "not found", "DeviceNotFound"))


def test_create_existing_device_fails(hub):
    ok_json(run(hub, "data-dir", "hub", "device-identity", "create", "-d", "cli-dup"))
    fails(
        run(hub, "data-dir", "hub", "device-identity", "create", "-d", "cli-dup"),
        mentions=("cli-dup", "exists", "DeviceAlreadyExists"),
    )


def test_sdk_created_device_is_visible_to_the_cli(hub, rm):
    key = base64.b64encode(os.urandom(32)).decode()
    rm.create_device_with_sas("cli-sdk", key, base64.b64encode(os.urandom(32)).decode(), "enabled")
    cs = ok_json(
        run(hub, "login", "hub", "device-identity", "connection-string", "show", "-d", "cli-sdk")
    )
    assert parse_cs(cs["connectionString"])["SharedAccessKey"] == key


@pytest.mark.parametrize("via", ["data-dir", "login"])
def test_hub_connection_string_show(hub, via):
    shown = ok_json(run(hub, via, "hub", "connection-string", "show"))
    parts = parse_cs(shown["connectionString"])
    assert parts["HostName"] == hub.hostname
    assert parts == hub.connection_string_parts()


def test_wrong_login_key_fails(hub):
    parts = hub.connection_string_parts()
    parts["SharedAccessKey"] = base64.b64encode(os.urandom(64)).decode()
    bad = ";".join(f"{k}={v}" for k, v in parts.items())
    env = {k: v for k, v in os.environ.items() if not k.startswith("IRONHUB_")}
    proc = subprocess.run(
        [ironhub_bin(), "hub", "device-identity", "list", "--login", bad, "--cafile", hub.ca_file],
        capture_output=True,
        text=True,
        timeout=TIMEOUT_S,
        stdin=subprocess.DEVNULL,
        env=env,
        cwd=str(hub.workdir),
    )
    fails(proc, mentions=("401", "unauthorized", "IotHubUnauthorizedAccess"))
