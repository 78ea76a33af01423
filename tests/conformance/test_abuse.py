"""Abuse (issue 15): a flood of TCP connections that never start TLS, silent clients on MQTT and
MQTT over WebSocket, frames over the limits of MQTT, WebSocket and AMQP, and a device hammering
twin updates. Each time another device's telemetry (the Python device SDK) and a registry call
(the service SDK) keep their latency, measured against a baseline taken in the same test (the
bound is generous: a loaded CI machine is noisy), the server's memory stays bounded, and with
throttling on the hammering device gets IoT Hub's throttling answers while others do not.

HTTPS slow bodies and heads are `test_slow_clients.py`'s; the per-address cap is
`test_limits.py`'s."""

from __future__ import annotations

import resource
import socket
import ssl
import statistics
import struct
import threading
import time

import pytest
from azure.iot.device import IoTHubDeviceClient, Message

from conftest import closed_by_server, test_address
from dps_helpers import sas

IRONHUB_ADDRESS = "127.0.0.221"
FLOOD_SOURCE = test_address("127.0.0.222")
HANDSHAKE_TIMEOUT_S = 3
# The MQTT CONNECT timeout (crates/mqtt/src/connection.rs).
CONNECT_TIMEOUT_S = 10
SLACK_S = 5.0
FLOOD = 2000
# Bounds against the baseline: a slowdown factor plus an absolute allowance, and memory growth.
SLOWDOWN, ALLOWANCE_S = 5.0, 1.0
MAX_GROWTH_MB = 200
# The MQTT packet limit (crates/mqtt/src/framing.rs) and a size over every frame limit.
MQTT_MAX_PACKET = 256 * 1024 + 64 * 1024
HUGE = 64 * 1024 * 1024


def ironhub_args(workdir) -> list[str]:
    # The flood needs more descriptors than the usual soft limit, here and in the server.
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, min(hard, 8 * FLOOD)), hard))
    config = workdir / "ironhub.toml"
    config.write_text(
        """
[throttling]
sync_interval_ms = 100

[throttling.device_twin]
device = { rate = 5, burst = 5 }
"""
    )
    return ["--config", str(config), "--tls-handshake-timeout-seconds", str(HANDSHAKE_TIMEOUT_S)]


def rss_mb(hub) -> float:
    with open(f"/proc/{hub.proc.pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


class Others:
    """A device sending telemetry with the SDK and a registry manager: the clients that must
    keep being served."""

    def __init__(self, hub, rm, device_id: str):
        key = rm.create_device_with_sas(device_id, None, None, "enabled").authentication.symmetric_key.primary_key
        cs = f"HostName={hub.hostname};DeviceId={device_id};SharedAccessKey={key}"
        self.device_id = device_id
        self.rm = rm
        self.drops = 0
        self.closing = False
        self.device = IoTHubDeviceClient.create_from_connection_string(
            cs, server_verification_cert=open(hub.ca_file).read()
        )

        def changed():
            if not self.device.connected and not self.closing:
                self.drops += 1

        self.device.on_connection_state_change = changed
        self.device.connect()

    def latencies(self, n: int = 5) -> list[float]:
        """Seconds each of `n` telemetry sends (until PUBACK) and `n` registry reads took."""
        out = []
        for i in range(n):
            t0 = time.monotonic()
            self.device.send_message(Message(f"ping {i}"))
            out.append(time.monotonic() - t0)
            t0 = time.monotonic()
            assert self.rm.get_device(self.device_id).device_id == self.device_id
            out.append(time.monotonic() - t0)
        return out

    def close(self):
        self.closing = True
        self.device.shutdown()


def assert_kept_latency(baseline: list[float], under_load: list[float]) -> None:
    bound = statistics.median(baseline) * SLOWDOWN + ALLOWANCE_S
    assert max(under_load) <= bound, (
        f"slowest call {max(under_load):.3f} s under load, bound {bound:.3f} s "
        f"(baseline median {statistics.median(baseline):.3f} s)"
    )


def tls(hub, port: int) -> ssl.SSLSocket:
    ctx = ssl.create_default_context(cafile=hub.ca_file)
    return ctx.wrap_socket(socket.create_connection((hub.address, port), timeout=30), server_hostname=hub.hostname)


def websocket(hub) -> ssl.SSLSocket:
    """A TLS connection upgraded to WebSocket on the MQTT path (101 read), nothing sent yet."""
    ws = tls(hub, 443)
    ws.sendall(
        (
            "GET /$iothub/websocket HTTP/1.1\r\n"
            f"Host: {hub.hostname}\r\n"
            "Upgrade: websocket\r\nConnection: Upgrade\r\n"
            "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
            "Sec-WebSocket-Protocol: mqtt\r\n\r\n"
        ).encode()
    )
    head = b""
    while b"\r\n\r\n" not in head:
        chunk = ws.recv(4096)
        assert chunk, "the upgrade was answered"
        head += chunk
    assert head.startswith(b"HTTP/1.1 101"), head
    return ws


def test_a_connection_flood_does_not_starve_real_clients_or_grow_memory(hub, rm):
    others = Others(hub, rm, "flood-witness")
    flood: list[socket.socket] = []
    try:
        baseline = others.latencies()
        memory_before = rss_mb(hub)
        for _ in range(FLOOD):
            flood.append(socket.create_connection((hub.address, 8883 if len(flood) % 2 else 443),
                                                  timeout=30, source_address=(FLOOD_SOURCE, 0)))
        under_flood = others.latencies()
        memory_during = rss_mb(hub)
        assert_kept_latency(baseline, under_flood)
        assert memory_during - memory_before < MAX_GROWTH_MB, (memory_before, memory_during)
        # Connections that never start TLS are dropped once the handshake timeout runs out.
        started = time.monotonic()
        for s in flood[:: FLOOD // 20]:
            left = HANDSHAKE_TIMEOUT_S + SLACK_S - (time.monotonic() - started)
            assert closed_by_server(s, max(left, 0.1)), "a silent connection outlived the handshake timeout"
        assert others.drops == 0
    finally:
        for s in flood:
            s.close()
        others.close()


def test_silent_mqtt_and_websocket_clients_are_closed(hub):
    silent_mqtt = tls(hub, 8883)
    silent_ws = websocket(hub)
    try:
        # Neither sends an MQTT CONNECT: both are closed once the CONNECT timeout runs out.
        assert closed_by_server(silent_mqtt, CONNECT_TIMEOUT_S + SLACK_S)
        assert closed_by_server(silent_ws, CONNECT_TIMEOUT_S + SLACK_S)
    finally:
        silent_mqtt.close()
        silent_ws.close()


def mqtt_connect(hub, rm, s, device_id: str) -> None:
    """Sends a device's MQTT CONNECT on `s` and reads its CONNACK."""
    key = rm.create_device_with_sas(device_id, None, None, "enabled").authentication.symmetric_key.primary_key

    def field(b: bytes) -> bytes:
        return struct.pack(">H", len(b)) + b

    payload = field(device_id.encode())
    user = field(f"{hub.hostname}/{device_id}/?api-version=2021-04-12".encode())
    password = field(sas(f"{hub.hostname}/devices/{device_id}", key).encode())
    variable = field(b"MQTT") + bytes([4, 0b11000010]) + struct.pack(">H", 60)
    body = variable + payload + user + password
    s.sendall(bytes([0x10]) + varint(len(body)) + body)
    connack = s.recv(4)
    assert connack[:1] == b"\x20" and connack[3:4] == b"\x00", connack


def varint(n: int) -> bytes:
    out = bytearray()
    while True:
        n, digit = divmod(n, 128)
        out.append(digit | (0x80 if n else 0))
        if not n:
            return bytes(out)


def test_frames_over_the_limits_are_refused_at_once(hub, rm):
    # MQTT: a PUBLISH declaring one byte more than the limit is refused from its header.
    s = tls(hub, 8883)
    try:
        mqtt_connect(hub, rm, s, "big-frames")
        topic = b"devices/big-frames/messages/events/"
        # First a PUBLISH under the limit (QoS 1): acknowledged, the connection stays.
        small = struct.pack(">H", len(topic)) + topic + struct.pack(">H", 1) + b"x" * 1000
        s.sendall(bytes([0x32]) + varint(len(small)) + small)
        assert s.recv(4) == b"\x40\x02\x00\x01", "the PUBACK of a packet under the limit"
        s.sendall(bytes([0x30]) + varint(MQTT_MAX_PACKET + 1) + struct.pack(">H", len(topic)) + topic)
        assert closed_by_server(s, SLACK_S), "an MQTT packet over the limit closes the connection"
    finally:
        s.close()

    # WebSocket: a frame declaring 64 MiB is refused from its header.
    ws = websocket(hub)
    try:
        # FIN + binary, masked, 64-bit length, mask key, a few bytes of the payload.
        ws.sendall(bytes([0x82, 0x80 | 127]) + struct.pack(">Q", HUGE) + b"\x01\x02\x03\x04" + b"\x00" * 64)
        assert closed_by_server(ws, SLACK_S), "a WebSocket frame over the limit closes the connection"
    finally:
        ws.close()

    # AMQP: before Open a peer may send frames of at most 512 bytes (AMQP 1.0, 2.4.1); a SASL
    # frame declaring 64 MiB is refused from its header.
    a = tls(hub, 5671)
    try:
        a.sendall(b"AMQP\x03\x01\x00\x00")
        header = b""
        while len(header) < 8:
            chunk = a.recv(8 - len(header))
            assert chunk, "the protocol header was answered"
            header += chunk
        assert header == b"AMQP\x03\x01\x00\x00", header
        a.sendall(struct.pack(">IBBH", HUGE, 2, 1, 0) + b"\x00" * 64)
        assert closed_by_server(a, SLACK_S), "an AMQP frame over the limit closes the connection"
    finally:
        a.close()


def test_a_device_hammering_twin_updates_is_throttled_while_others_keep_their_latency(hub, rm):
    paho = pytest.importorskip("paho.mqtt.client")
    others = Others(hub, rm, "hammer-witness")
    key = rm.create_device_with_sas("hammer", None, None, "enabled").authentication.symmetric_key.primary_key
    statuses: dict[str, int] = {}
    connected = threading.Event()
    c = paho.Client(client_id="hammer", clean_session=True, protocol=paho.MQTTv311)
    c.username_pw_set(f"{hub.hostname}/hammer/?api-version=2021-04-12", sas(f"{hub.hostname}/devices/hammer", key))
    c.tls_set_context(ssl.create_default_context(cafile=hub.ca_file))
    c.on_connect = lambda *a: connected.set()

    def answered(client, userdata, m):
        status = m.topic.split("/")[3]
        statuses[status] = statuses.get(status, 0) + 1

    c.on_message = answered
    stop = threading.Event()

    def hammer():
        i = 0
        while not stop.is_set():
            c.publish(f"$iothub/twin/PATCH/properties/reported/?$rid={i}", f'{{"n": {i}}}', qos=0)
            i += 1
            if i % 50 == 0:
                time.sleep(0.01)  # leave the GIL to the witnesses now and then

    try:
        baseline = others.latencies()
        memory_before = rss_mb(hub)
        c.connect(hub.address, 8883, keepalive=30)
        c.loop_start()
        assert connected.wait(30)
        c.subscribe("$iothub/twin/res/#", 0)
        worker = threading.Thread(target=hammer, daemon=True)
        worker.start()
        under_load = others.latencies()
        memory_during = rss_mb(hub)
        stop.set()
        worker.join(30)
        assert_kept_latency(baseline, under_load)
        assert memory_during - memory_before < MAX_GROWTH_MB, (memory_before, memory_during)
        deadline = time.monotonic() + 10
        while statuses.get("429", 0) == 0 and time.monotonic() < deadline:
            time.sleep(0.1)
        assert statuses.get("204", 0) >= 1 and statuses.get("429", 0) >= 1, statuses
        # The witness's own twin is not throttled by the hammer's rate.
        assert others.rm.get_twin("hammer-witness").device_id == "hammer-witness"
        assert others.drops == 0
    finally:
        stop.set()
        c.loop_stop()
        c.disconnect()
        others.close()
