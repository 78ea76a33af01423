"""Devices over AMQP with the real Node device SDK (`azure-iot-device` with
`azure-iot-device-amqp`'s `Amqp` on 5671 and `AmqpWs` on 443), driven through
`node/device_amqp.js`, against the Python service SDK: telemetry read back from the event
stream with its properties, cloud-to-device messages completed, rejected and abandoned with
their feedback, the twin (get, reported patch, desired patch), a direct method, an X.509
device, and the refusals (wrong key, another device's token, another device's address).
"""

from __future__ import annotations

import json
import os
import queue
import shutil
import subprocess
import threading
import time
from pathlib import Path

import pytest
import requests
from azure.iot.hub.models import CloudToDeviceMethod, Twin, TwinProperties

from conftest import NODE_DIR, node_json
from dps_helpers import make_self_signed, sas, sha1_thumbprint, stored_events, wait_for

IRONHUB_ADDRESS = "127.0.0.135"
WAIT_S = 20
TRANSPORTS = pytest.mark.parametrize("transport", ["amqp", "amqpws"])
API = "api-version=2021-04-12"


class NodeDevice:
    """`node device_amqp.js`: one command a line in, one JSON line out (and events)."""

    def __init__(self, hub, transport: str, connection_string: str, cert: Path | None = None,
                 key: Path | None = None):
        if shutil.which("node") is None:
            pytest.fail("`node` is not installed: run the suite through scripts/test", pytrace=False)
        env = dict(os.environ, NODE_EXTRA_CA_CERTS=hub.ca_file, DEVICE_CONNECTION_STRING=connection_string,
                   DEBUG="azure-iot-device-amqp*,azure-iot-amqp-base*")
        if cert:
            env.update(DEVICE_CERT=str(cert), DEVICE_KEY=str(key))
        self.proc = subprocess.Popen(
            ["node", str(NODE_DIR / "device_amqp.js"), transport], cwd=NODE_DIR, env=env,
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )
        self.lines: queue.Queue = queue.Queue()
        self.events: list = []
        self.stderr: list = []
        threading.Thread(target=self._read, daemon=True).start()
        threading.Thread(target=lambda: self.stderr.extend(self.proc.stderr), daemon=True).start()
        self.opened = self._next(lambda m: m.get("event") in ("open", "openError"))

    def _read(self):
        for line in self.proc.stdout:
            if line.startswith("{"):
                self.lines.put(json.loads(line))
        self.lines.put(None)

    def _next(self, wanted):
        deadline = time.monotonic() + WAIT_S
        for i, seen in enumerate(self.events):
            if wanted(seen):
                return self.events.pop(i)
        while True:
            left = deadline - time.monotonic()
            try:
                line = self.lines.get(timeout=max(left, 0.01))
            except queue.Empty:
                raise AssertionError(f"no answer from the Node device within {WAIT_S} s: {self.events}\n"
                                     + "".join(self.stderr[-60:])) from None
            if line is None:
                raise AssertionError("the Node device exited:\n" + "".join(self.stderr[-60:]))
            if wanted(line):
                return line
            self.events.append(line)

    def run(self, cmd: str, **args) -> dict:
        self.proc.stdin.write(json.dumps({"cmd": cmd, **args}) + "\n")
        self.proc.stdin.flush()
        out = self._next(lambda m: m.get("cmd") == cmd)
        assert "error" not in out, out
        return out

    def event(self, name: str, where=lambda m: True) -> dict:
        return self._next(lambda m: m.get("event") == name and where(m))

    def close(self):
        if self.proc.poll() is None:
            try:
                self.run("close")
            except AssertionError:
                pass
            self.proc.kill()
        self.proc.wait(timeout=WAIT_S)


@pytest.fixture(scope="module")
def registry(amqp_registry):
    """conftest's registry manager that sends C2D over AMQP trusting the server's CA."""
    return amqp_registry


def sas_device(hub, registry, device_id: str) -> tuple[str, str]:
    key = registry.create_device_with_sas(device_id, None, None, "enabled").authentication.symmetric_key.primary_key
    return key, f"HostName={hub.hostname};DeviceId={device_id};SharedAccessKey={key}"


def service_headers(hub) -> dict:
    parts = hub.connection_string_parts()
    return {"Authorization": sas(hub.hostname, parts["SharedAccessKey"], parts["SharedAccessKeyName"])}


def feedback(hub) -> list:
    """Every feedback record waiting, completing the batches read (REST)."""
    records = []
    while True:
        r = requests.get(f"https://{hub.address}/messages/serviceBound/feedback?{API}",
                         headers=service_headers(hub), verify=hub.ca_file, timeout=10)
        if r.status_code == 204:
            return records
        assert r.status_code == 200, r.text
        records.extend(r.json())
        token = r.headers["ETag"].strip('"')
        done = requests.delete(f"https://{hub.address}/messages/serviceBound/feedback/{token}?{API}",
                               headers=service_headers(hub), verify=hub.ca_file, timeout=10)
        assert done.status_code == 204


@TRANSPORTS
def test_telemetry_twin_and_method(hub, registry, transport):
    device_id = f"amqp-dev-{transport}"
    _, cs = sas_device(hub, registry, device_id)
    device = NodeDevice(hub, transport, cs)
    try:
        assert device.opened["event"] == "open", device.opened
        device.run("send", text='{"t": 21}', messageId="m-1", contentType="application/json",
                   properties={"colour": "blue"})
        # Connected while a link of the device is up (the telemetry and C2D links are).
        assert registry.get_device(device_id).connection_state == "Connected"
        [event] = stored_events(hub, device_id)
        assert event["body"] == {"t": 21}
        assert event["applicationProperties"] == {"colour": "blue"}
        system = event["systemProperties"]
        assert system["message-id"] == "m-1"
        assert system["content-type"] == "application/json"
        assert system["iothub-connection-device-id"] == device_id
        assert json.loads(system["iothub-connection-auth-method"])["type"] == "sas"

        got = device.run("twin")
        assert got["desired"]["$version"] == 1
        device.run("report", patch={"firmware": "1.2"})
        assert registry.get_twin(device_id).properties.reported["firmware"] == "1.2"

        device.run("desired")
        twin = registry.get_twin(device_id)
        registry.update_twin(device_id, Twin(properties=TwinProperties(desired={"rate": 5})), twin.etag)
        # The SDK reports the twin's desired properties once when listening starts, then each
        # patch.
        delta = device.event("desired", lambda m: "rate" in m["delta"])["delta"]
        assert delta["rate"] == 5 and delta["$version"] == 2

        device.run("method", name="reboot", status=201, answer={"ok": True})
        result = registry.invoke_device_method(
            device_id, CloudToDeviceMethod(method_name="reboot", payload={"delay": 1}, response_timeout_in_seconds=10))
        assert result.status == 201
        assert result.payload == {"ok": True}
        assert device.event("method")["payload"] == {"delay": 1}
    finally:
        device.close()
    wait_for(lambda: registry.get_device(device_id).connection_state == "Disconnected", what="the disconnection")


@TRANSPORTS
def test_cloud_to_device_complete_reject_abandon_with_feedback(hub, registry, transport):
    device_id = f"amqp-c2d-{transport}"
    _, cs = sas_device(hub, registry, device_id)
    feedback(hub)
    device = NodeDevice(hub, transport, cs)
    try:
        assert device.opened["event"] == "open", device.opened
        for n in ("one", "two", "three"):
            registry.send_c2d_message(device_id, n, {"iothub-ack": "full", "messageId": f"c-{n}", "k": n})
        first = device.run("c2d", settle="complete")
        assert first["data"] == "one" and first["messageId"] == "c-one"
        assert first["properties"]["k"] == "one"
        assert device.run("c2d", settle="reject")["data"] == "two"
        assert device.run("c2d", settle="abandon")["data"] == "three"
        again = device.run("c2d", settle="complete")
        assert again["data"] == "three"
    finally:
        device.close()
    records = wait_for(lambda: (lambda r: r if len(r) >= 3 else None)(feedback(hub)), what="three feedback records")
    by_id = {r["originalMessageId"]: r["statusCode"] for r in records}
    assert by_id == {"c-one": "Success", "c-two": "Rejected", "c-three": "Success"}


@TRANSPORTS
def test_x509_device(hub, registry, tmp_path, transport):
    device_id = f"amqp-x509-{transport}"
    make_self_signed(tmp_path, "device", device_id)
    thumb = sha1_thumbprint(tmp_path / "device.pem")
    registry.create_device_with_x509(device_id, thumb, thumb, "enabled")
    cs = f"HostName={hub.hostname};DeviceId={device_id};x509=true"
    device = NodeDevice(hub, transport, cs, tmp_path / "device.pem", tmp_path / "device.key")
    try:
        assert device.opened["event"] == "open", device.opened
        device.run("send", text="from x509")
        device.run("report", patch={"cert": "ok"})
    finally:
        device.close()
    [event] = stored_events(hub, device_id)
    assert event["body"] == "from x509"
    assert "x509" in event["systemProperties"]["iothub-connection-auth-method"].lower()
    assert registry.get_twin(device_id).properties.reported["cert"] == "ok"

    # A certificate that is not the registered one gets nowhere: TLS and the open succeed (the
    # certificate is checked when a link of the device attaches), the telemetry link is refused
    # and the SDK reports the disconnection (or the send's failure).
    other = tmp_path / "other"
    other.mkdir()
    make_self_signed(other, "device", device_id)
    device = NodeDevice(hub, transport, cs, other / "device.pem", other / "device.key")
    try:
        if device.opened["event"] == "open":
            device.proc.stdin.write(json.dumps({"cmd": "send", "text": "no"}) + "\n")
            device.proc.stdin.flush()
            out = device._next(lambda m: m.get("cmd") == "send" or m.get("event") == "disconnect")
            assert "error" in out, out
    finally:
        device.close()
    assert len(stored_events(hub, device_id)) == 1


@TRANSPORTS
def test_wrong_key_and_another_device_s_token_are_refused(hub, registry, transport):
    device_id = f"amqp-bad-{transport}"
    key, _ = sas_device(hub, registry, device_id)
    _, other_cs = sas_device(hub, registry, f"{device_id}-other")
    wrong = "A" * 43 + "="
    device = NodeDevice(hub, transport, f"HostName={hub.hostname};DeviceId={device_id};SharedAccessKey={wrong}")
    try:
        assert device.opened["event"] == "openError", device.opened
        assert device.opened["error"]["name"] == "UnauthorizedError", device.opened
    finally:
        device.close()
    # The other device's key, signing for this device's name: refused the same way.
    other_key = other_cs.rsplit("SharedAccessKey=", 1)[1]
    assert other_key != key
    device = NodeDevice(hub, transport,
                        f"HostName={hub.hostname};DeviceId={device_id};SharedAccessKey={other_key}")
    try:
        assert device.opened["event"] == "openError", device.opened
    finally:
        device.close()
    assert stored_events(hub, device_id) == []
    assert registry.get_device(device_id).connection_state == "Disconnected"


def run_raw(hub, *args: str) -> dict:
    """`node amqp_raw.js`: one device link through the SDKs' AMQP layer."""
    env = {"NODE_EXTRA_CA_CERTS": hub.ca_file, "DEBUG": "azure-iot-amqp-base*,rhea:events"}
    return node_json("amqp_raw.js", "--host", hub.hostname, *args, env=env)


def test_a_link_to_another_device_s_address_is_refused(hub, registry):
    key, _ = sas_device(hub, registry, "amqp-raw-a")
    sas_device(hub, registry, "amqp-raw-b")
    out = run_raw(hub, "--device", "amqp-raw-a", "--key", key, "--address", "/devices/amqp-raw-b/messages/events")
    assert out["putToken"] == "ok", out
    assert "amqp:unauthorized-access" in (out["attach"], out.get("send")), out
    # A token for another device is refused by $cbs, and its link too.
    out = run_raw(hub, "--device", "amqp-raw-b", "--key", key, "--address", "/devices/amqp-raw-b/messages/events")
    assert out["putToken"] != "ok", out
    assert "amqp:unauthorized-access" in (out["attach"], out.get("send")), out
    # Unknown addresses under a device: not found.
    out = run_raw(hub, "--device", "amqp-raw-a", "--key", key, "--address", "/devices/amqp-raw-a/nowhere")
    assert "amqp:not-found" in (out["attach"], out.get("send")), out
    assert stored_events(hub, "amqp-raw-b") == []
    assert registry.get_device("amqp-raw-b").connection_state == "Disconnected"
    # The device's own address works on the same kind of connection.
    out = run_raw(hub, "--device", "amqp-raw-a", "--key", key, "--address", "/devices/amqp-raw-a/messages/events")
    assert out == {"putToken": "ok", "attach": "ok", "send": "ok"}, out
    assert [e["body"] for e in stored_events(hub, "amqp-raw-a")] == ["raw"]


def test_many_devices_share_one_connection(hub, registry):
    """The gateway pattern: each device's token on the same connection, each its own links."""
    key_a, _ = sas_device(hub, registry, "amqp-gw-a")
    key_b, _ = sas_device(hub, registry, "amqp-gw-b")
    out = run_raw(hub, "--device", "amqp-gw-a", "--key", key_a, "--address", "/devices/amqp-gw-a/messages/events",
                  "--gateway", "amqp-gw-b", "--gateway-key", key_b)
    assert out == {"putToken": "ok", "attach": "ok", "send": "ok", "gateway": "ok"}, out
    [a] = stored_events(hub, "amqp-gw-a")
    [b] = stored_events(hub, "amqp-gw-b")
    assert (a["body"], b["body"]) == ("raw", "gateway")
    assert b["systemProperties"]["iothub-connection-device-id"] == "amqp-gw-b"


def test_an_expired_token_closes_the_links_unless_renewed(hub, registry):
    key, _ = sas_device(hub, registry, "amqp-expiry")
    address = "/devices/amqp-expiry/messages/events"
    # Valid for 2 s, not renewed: the link is closed when it lapses.
    out = run_raw(hub, "--device", "amqp-expiry", "--key", key, "--address", address, "--ttl", "2",
                  "--hold", "8000")
    assert out["send"] == "ok", out
    assert out["detached"] == "amqp:unauthorized-access", out
    wait_for(lambda: registry.get_device("amqp-expiry").connection_state == "Disconnected", what="the disconnection")
    # Renewed on the same connection before it lapses: the link lives on past the first expiry.
    out = run_raw(hub, "--device", "amqp-expiry", "--key", key, "--address", address, "--ttl", "2",
                  "--renew-after", "500", "--hold", "4000")
    assert out["detached"] is None and out["late"] == "ok", out
    assert len(stored_events(hub, "amqp-expiry")) == 3


def test_takeover_oversized_telemetry_and_revocation(hub, registry):
    device_id = "amqp-takeover"
    _, cs = sas_device(hub, registry, device_id)
    first = NodeDevice(hub, "amqp", cs)
    second = None
    try:
        assert first.opened["event"] == "open", first.opened
        first.run("send", text="first")
        second = NodeDevice(hub, "amqpws", cs)
        assert second.opened["event"] == "open", second.opened
        second.run("send", text="second")
        # The first connection's links are closed: the SDK reports the disconnection.
        assert first.event("disconnect")["error"] is not None
        assert registry.get_device(device_id).connection_state == "Connected"

        # Over IoT Hub's 256 KB: refused, nothing stored, the connection goes on.
        second.proc.stdin.write(json.dumps({"cmd": "send", "text": "x" * (260 * 1024)}) + "\n")
        second.proc.stdin.flush()
        out = second._next(lambda m: m.get("cmd") == "send")
        assert "error" in out, out
        second.run("send", text="after")

        # Disabled: the device's links are closed (revoked), as on MQTT.
        device = registry.get_device(device_id)
        registry.update_device_with_sas(device_id, device.etag, device.authentication.symmetric_key.primary_key,
                                        device.authentication.symmetric_key.secondary_key, "disabled")
        assert second.event("disconnect")["error"] is not None
        wait_for(lambda: registry.get_device(device_id).connection_state == "Disconnected", what="the disconnection")
    finally:
        first.close()
        if second:
            second.close()
    assert [e["body"] for e in stored_events(hub, device_id)] == ["first", "second", "after"]
