"""TPM attestation through DPS over AMQP, with the real Node.js SDKs and a software TPM.

The device is `azure-iot-provisioning-device`'s `ProvisioningDeviceClient` with
`azure-iot-provisioning-device-amqp`'s `Amqp` transport and `azure-iot-security-tpm`'s
`TpmSecurityClient`, driven through `node/dps_tpm.js`: it logs in with SASL mechanism `TPM`
(its endorsement key in `sasl-init`, its storage root key in the first response, the server's
activation blob in segmented challenges, the SAS token its TPM signs in the last response;
`docs/protocol/tpm.md`, "Over AMQP"), then registers on the
`{idScope}/registrations/{registrationId}` links. The provisioned device connects to its hub
with `TpmAuthenticationProvider`, every token signed inside the TPM, and sends telemetry.

The TPM is Debian's `swtpm`. The SDK's TPM library, tss.js, speaks the Microsoft TPM
simulator's TCP protocol: its command port takes a handshake and then commands framed as
`TPM_SEND_COMMAND`, which swtpm understands, and a platform port next to it takes power and NV
signals. swtpm answers neither the handshake nor those signals (its control channel speaks
its own protocol), so `SimulatedTpm` answers them and passes the commands on to swtpm, which
starts its TPM itself (`--flags not-need-init,startup-clear`).
"""

from __future__ import annotations

import json
import os
import socket
import struct
import subprocess
import threading
import time
from pathlib import Path

import pytest

from conftest import require_tool, test_address
from dps_helpers import dps_info, stored_events, wait_for
from test_dps_node import (  # noqa: F401 (node_sdks: a fixture, the Node SDKs installed)
    NODE_DIR, assert_no_hub_device, node_sdks, service, service_error, unique,
)

IRONHUB_ADDRESS = test_address("127.0.0.87")

SCRIPT = NODE_DIR / "dps_tpm.js"
NODE_TIMEOUT_S = 90
TPM_TIMEOUT_S = 30
# The Microsoft simulator protocol: the handshake command and the version tss.js speaks.
HANDSHAKE = 15
SIMULATOR_VERSION = 1


def _recv_exactly(sock: socket.socket, n: int) -> bytes:
    data = b""
    while len(data) < n:
        chunk = sock.recv(n - len(data))
        if not chunk:
            raise ConnectionError("closed")
        data += chunk
    return data


def _pipe(src: socket.socket, dst: socket.socket) -> None:
    try:
        while data := src.recv(65536):
            dst.sendall(data)
    except OSError:
        pass
    finally:
        for s in (src, dst):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


def _port_pair(host: str) -> tuple[socket.socket, socket.socket]:
    """Two listening sockets on adjacent ports (the simulator's command and platform ports)."""
    for _ in range(100):
        command = socket.create_server((host, 0))
        try:
            platform = socket.create_server((host, command.getsockname()[1] + 1))
        except OSError:
            command.close()
            continue
        return command, platform
    raise RuntimeError(f"no two adjacent free ports on {host}")


class SimulatedTpm:
    """swtpm behind the Microsoft TPM simulator's TCP protocol, on `host`:`port` (and
    `port + 1`); swtpm itself listens on a Unix socket in `workdir`."""

    def __init__(self, workdir: Path, host: str):
        self.dir, self.host = workdir, host
        self.sock = workdir / "tpm.sock"

    def __enter__(self) -> SimulatedTpm:
        self.command, self.platform = _port_pair(self.host)
        self.port = self.command.getsockname()[1]
        self.proc = subprocess.Popen(
            ["swtpm", "socket", "--tpm2", "--tpmstate", f"dir={self.dir}",
             "--server", f"type=unixio,path={self.sock}",
             "--ctrl", f"type=unixio,path={self.sock}.ctrl",
             "--flags", "not-need-init,startup-clear"],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL)
        deadline = time.monotonic() + TPM_TIMEOUT_S
        while not self.sock.exists():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"swtpm did not start: {self.proc.stderr.read()}")
            time.sleep(0.05)
        for listener, serve in ((self.command, self._command), (self.platform, self._platform)):
            threading.Thread(target=self._accept, args=(listener, serve), daemon=True).start()
        return self

    def __exit__(self, *exc) -> None:
        for s in (self.command, self.platform):
            s.close()
        self.proc.terminate()
        self.proc.wait(timeout=10)

    @staticmethod
    def _accept(listener: socket.socket, serve) -> None:
        while True:
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            threading.Thread(target=serve, args=(conn,), daemon=True).start()

    def _command(self, conn: socket.socket) -> None:
        """The handshake answered here; the commands after it passed on to swtpm."""
        try:
            code, _version = struct.unpack(">II", _recv_exactly(conn, 8))
            if code != HANDSHAKE:
                conn.close()
                return
            conn.sendall(struct.pack(">III", SIMULATOR_VERSION, 0, 0))
            upstream = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            upstream.connect(str(self.sock))
        except OSError:
            conn.close()
            return
        threading.Thread(target=_pipe, args=(upstream, conn), daemon=True).start()
        _pipe(conn, upstream)

    @staticmethod
    def _platform(conn: socket.socket) -> None:
        """Power and NV signals: acknowledged (swtpm's TPM is on and started)."""
        with conn:
            try:
                while True:
                    _recv_exactly(conn, 4)
                    conn.sendall(b"\0\0\0\0")
            except OSError:
                pass


@pytest.fixture(scope="module")
def tpm(tmp_path_factory, node_sdks):  # noqa: F811 (node_sdks is a fixture)
    require_tool("swtpm")
    with SimulatedTpm(tmp_path_factory.mktemp("swtpm"), IRONHUB_ADDRESS) as simulated:
        yield simulated


def run_tpm_node(hub, tpm: SimulatedTpm, *args: str) -> tuple[int, dict, str]:
    """Runs `node dps_tpm.js <args> --tpm-host … --tpm-port …`: (exit code, its JSON, stderr)."""
    env = dict(os.environ)
    env["NODE_EXTRA_CA_CERTS"] = hub.ca_file
    env.pop("DEBUG", None)
    proc = subprocess.run(
        ["node", str(SCRIPT), *args, "--tpm-host", tpm.host, "--tpm-port", str(tpm.port)],
        cwd=NODE_DIR, env=env, capture_output=True, text=True, timeout=NODE_TIMEOUT_S,
        stdin=subprocess.DEVNULL)
    lines = [line for line in proc.stdout.splitlines() if line.strip()]
    try:
        out = json.loads(lines[-1])
    except (IndexError, json.JSONDecodeError):
        raise AssertionError(f"`node dps_tpm.js {args[0]}` printed no JSON (exit "
                             f"{proc.returncode})\nstdout:\n{proc.stdout}\nstderr:\n{proc.stderr}")
    return proc.returncode, out, proc.stderr


def tpm_ok(hub, tpm, *args: str) -> dict:
    code, out, stderr = run_tpm_node(hub, tpm, *args)
    assert code == 0 and "error" not in out, (
        f"`node dps_tpm.js {args[0]}` failed: {json.dumps(out, indent=1)}\n{stderr}")
    return out


def tpm_error(hub, tpm, *args: str) -> dict:
    code, out, stderr = run_tpm_node(hub, tpm, *args)
    assert code == 1 and "error" in out, (
        f"`node dps_tpm.js {args[0]}` should have failed: {json.dumps(out)}\n{stderr}")
    return out["error"]


def register_args(hub, rid: str, transport: str = "amqp") -> list[str]:
    return ["register", "--transport", transport, "--host", hub.address,
            "--scope", dps_info(hub)["idScope"], "--id", rid]


def tpm_enrollment(hub, rid: str, endorsement_key: str) -> None:
    service(hub, "createOrUpdateIndividualEnrollment", {
        "registrationId": rid,
        "attestation": {"type": "tpm", "tpm": {"endorsementKey": endorsement_key}},
    })


def test_a_tpm_device_provisions_over_amqp_and_sends_with_tpm_signed_tokens(hub, tpm):
    keys = tpm_ok(hub, tpm, "keys")
    rid = unique("amqp-tpm")
    tpm_enrollment(hub, rid, keys["endorsementKey"])

    state = tpm_ok(hub, tpm, *register_args(hub, rid))["registrationState"]
    assert state["status"] == "assigned", state
    assert state["deviceId"] == rid
    assert state["assignedHub"] == hub.hostname
    # The device key sealed to the TPM again, which the SDK imported to sign its hub tokens.
    assert state["tpm"]["authenticationKey"]
    record = service(hub, "getDeviceRegistrationState", rid)["result"]
    assert record["status"] == "assigned" and record["deviceId"] == rid
    device = hub.registry_manager().get_device(rid)
    assert device.authentication.type == "sas"

    text = f"hello from the TPM of {rid}"
    sent = tpm_ok(hub, tpm, "send", "--hub", state["assignedHub"], "--device-id", rid,
                  "--text", text, "--transport", "amqp")
    assert sent["result"] == "MessageEnqueued"
    wait_for(lambda: text in [e["body"] for e in stored_events(hub, rid)],
             what=f"{rid}'s telemetry in the event log")

    # The same TPM registers again: the same key, so the same device.
    again = tpm_ok(hub, tpm, *register_args(hub, rid))["registrationState"]
    assert again["status"] == "assigned" and again["deviceId"] == rid


def test_a_tpm_that_is_not_enrolled_is_refused_and_registers_nothing(hub, tpm):
    keys = tpm_ok(hub, tpm, "keys")
    # No enrollment at all.
    nobody = unique("amqp-tpm-nobody")
    refused = tpm_error(hub, tpm, *register_args(hub, nobody))
    assert "auth" in json.dumps(refused).lower(), refused
    assert_no_hub_device(hub, nobody)
    assert service_error(hub, "getDeviceRegistrationState", nobody)["statusCode"] == 404

    # An enrollment of another TPM (this TPM's storage root key stands in for its EK).
    other = unique("amqp-tpm-other")
    tpm_enrollment(hub, other, keys["storageRootKey"])
    refused = tpm_error(hub, tpm, *register_args(hub, other))
    assert "auth" in json.dumps(refused).lower(), refused
    assert_no_hub_device(hub, other)
    assert service_error(hub, "getDeviceRegistrationState", other)["statusCode"] == 404
