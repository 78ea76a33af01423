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

import base64
import json
import os
import socket
import ssl
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

    operation = tpm_ok(hub, tpm, *register_args(hub, rid))["result"]
    assert operation["status"] == "assigned", operation
    state = operation["registrationState"]
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
    again = tpm_ok(hub, tpm, *register_args(hub, rid))["result"]["registrationState"]
    assert again["status"] == "assigned" and again["deviceId"] == rid


# -- the SASL exchange frame by frame (AMQP 1.0 part 5, "SASL"; part 1, "Types") -----------

SASL_HEADER = b"AMQP\x03\x01\x00\x00"
SASL_MECHANISMS, SASL_INIT, SASL_CHALLENGE, SASL_RESPONSE, SASL_OUTCOME = 0x40, 0x41, 0x42, 0x43, 0x44
OUTCOME_AUTH = 1


class SaslClient:
    """A device's side of the SASL layer over TLS, one frame at a time."""

    def __init__(self, hub):
        ctx = ssl.create_default_context(cafile=hub.ca_file)
        raw = socket.create_connection((hub.address, 5671), timeout=15)
        self.sock = ctx.wrap_socket(raw, server_hostname=hub.address)
        self.sock.sendall(SASL_HEADER)
        assert _recv_exactly(self.sock, 8) == SASL_HEADER
        kind, body = self.read()
        assert kind == SASL_MECHANISMS
        self.mechanisms = body

    def close(self) -> None:
        self.sock.close()

    def send(self, performative: int, fields: bytes, count: int) -> None:
        body = b"\x00\x53" + bytes([performative]) + b"\xd0" + struct.pack(
            ">II", len(fields) + 4, count) + fields
        self.sock.sendall(struct.pack(">IBBH", len(body) + 8, 2, 1, 0) + body)

    def init(self, initial_response: bytes) -> None:
        self.send(SASL_INIT, b"\xa3\x03TPM" + _binary(initial_response), 2)

    def respond(self, response: bytes) -> None:
        self.send(SASL_RESPONSE, _binary(response), 1)

    def read(self) -> tuple[int, bytes]:
        """The next frame's performative and the bytes of its fields."""
        size, doff, _kind, _channel = struct.unpack(">IBBH", _recv_exactly(self.sock, 8))
        frame = _recv_exactly(self.sock, size - 8)[doff * 4 - 8:]
        assert frame[:2] == b"\x00\x53", frame
        return frame[2], frame[3:]

    def challenge(self) -> bytes:
        kind, fields = self.read()
        assert kind == SASL_CHALLENGE, (kind, fields)
        items = _list_items(fields)
        if items[0] == 0xA0:
            return items[2:2 + items[1]]
        (n,) = struct.unpack(">I", items[1:5])
        return items[5:5 + n]

    def outcome(self) -> int:
        kind, fields = self.read()
        assert kind == SASL_OUTCOME, (kind, fields)
        items = _list_items(fields)
        assert items[0] == 0x50, fields
        return items[1]


def _binary(data: bytes) -> bytes:
    return b"\xb0" + struct.pack(">I", len(data)) + data


def _list_items(fields: bytes) -> bytes:
    if fields[0] == 0xC0:
        return fields[3:]
    assert fields[0] == 0xD0, fields
    return fields[9:]


def init_response(scope: str, rid: str, ek: bytes) -> bytes:
    return b"\x00" + scope.encode() + b"\x00" + rid.encode() + b"\x00" + ek


def test_a_tpm_that_is_not_enrolled_or_a_malformed_exchange_is_refused(hub, tpm):
    """The outcome `auth`, and nothing registered. (The Node SDK never reports a refusal that
    comes before the challenge: its `getAuthenticationChallenge` callback is only called with
    a challenge, so the exchange is driven frame by frame here.)"""
    keys = tpm_ok(hub, tpm, "keys")
    ek, srk = base64.b64decode(keys["endorsementKey"]), base64.b64decode(keys["storageRootKey"])
    scope = dps_info(hub)["idScope"]
    other = unique("amqp-tpm-other")
    # An enrollment of another TPM (this TPM's storage root key stands in for its EK).
    tpm_enrollment(hub, other, keys["storageRootKey"])
    nobody = unique("amqp-tpm-nobody")

    for rid in (nobody, other):
        client = SaslClient(hub)
        try:
            assert b"TPM" in client.mechanisms
            client.init(init_response(scope, rid, ek))
            assert client.challenge() == b"\x00"
            client.respond(b"\x00" + srk)
            assert client.outcome() == OUTCOME_AUTH
        finally:
            client.close()
        assert_no_hub_device(hub, rid)
        assert service_error(hub, "getDeviceRegistrationState", rid)["statusCode"] == 404

    # A malformed init frame (no registration id), and an SRK frame without its prefix.
    client = SaslClient(hub)
    try:
        client.init(b"\x00" + scope.encode() + b"\x00")
        assert client.outcome() == OUTCOME_AUTH
    finally:
        client.close()
    enrolled = unique("amqp-tpm-enrolled")
    tpm_enrollment(hub, enrolled, keys["endorsementKey"])
    client = SaslClient(hub)
    try:
        client.init(init_response(scope, enrolled, ek))
        assert client.challenge() == b"\x00"
        client.respond(srk)
        assert client.outcome() == OUTCOME_AUTH
    finally:
        client.close()

    # The enrolled TPM's blob in segments, then a token this TPM did not sign: refused.
    client = SaslClient(hub)
    try:
        client.init(init_response(scope, enrolled, ek))
        assert client.challenge() == b"\x00"
        client.respond(b"\x00" + srk)
        blob, sequence = b"", 0
        while True:
            segment = client.challenge()
            assert segment[0] & 0x83 == 0x80 | (sequence & 3), segment[0]
            blob += segment[1:]
            if segment[0] & 0x40:
                break
            client.respond(b"\x00")
            sequence += 1
        assert len(blob) > 400 and sequence >= 1, "the blob spans segments"
        token = (f"SharedAccessSignature sr={scope}%2fregistrations%2f{enrolled}"
                 f"&sig=bm90IHNpZ25lZA%3d%3d&se=4102444800&skn=registration")
        client.respond(b"\x00" + token.encode())
        assert client.outcome() == OUTCOME_AUTH
    finally:
        client.close()
    assert_no_hub_device(hub, enrolled)
    assert service_error(hub, "getDeviceRegistrationState", enrolled)["statusCode"] == 404
