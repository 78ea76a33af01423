"""Connection limits against real clients: a server started with a small
`--max-connections-per-address` and `--tls-handshake-timeout-seconds` refuses the connection
over the cap at once (on both ports), drops a client that never completes its TLS handshake, and
admits again once a place is free, while devices admitted before (paho over MQTT and over
MQTT over WebSocket, as the device SDKs connect) keep working.

Everything counted here connects from source addresses of the test net of its own (one a
test); the registry calls that create the devices come from the default source address, which
the cap counts apart."""

from __future__ import annotations

import gc
import socket
import ssl
import threading
import time

import pytest

from conftest import closed_by_server, test_address
from dps_helpers import sas

IRONHUB_ADDRESS = "127.0.0.125"
SOURCE = test_address("127.0.0.126")
OTHER_SOURCE = test_address("127.0.0.127")
CAP = 3
HANDSHAKE_TIMEOUT_S = 4
WAIT_S = 10.0
# A refused connection is closed right after accept; this bound stays well under the handshake
# timeout, so a close within it cannot be the timeout.
REFUSED_WITHIN_S = 2.0


def ironhub_args(workdir) -> list[str]:
    """The `hub` fixture's server runs with a small cap and a short handshake timeout."""
    return [
        "--max-connections-per-address", str(CAP),
        "--tls-handshake-timeout-seconds", str(HANDSHAKE_TIMEOUT_S),
    ]


def tcp_from(hub, port: int, source: str = SOURCE) -> socket.socket:
    """A TCP connection to the server from `source`."""
    return socket.create_connection((hub.address, port), timeout=WAIT_S, source_address=(source, 0))


def assert_refused(hub, port: int, source: str = SOURCE) -> None:
    with tcp_from(hub, port, source) as s:
        assert closed_by_server(s, REFUSED_WITHIN_S), f"a connection over the cap to port {port} is closed at once"


def tls_handshake(hub, port: int, source: str | None = SOURCE) -> ssl.SSLSocket:
    """A TLS connection from `source` (`None`: the default source address) whose handshake
    completed."""
    ctx = ssl.create_default_context(cafile=hub.ca_file)
    if source is None:
        tcp = socket.create_connection((hub.address, port), timeout=WAIT_S)
    else:
        tcp = tcp_from(hub, port, source)
    return ctx.wrap_socket(tcp, server_hostname=hub.hostname)


class Device:
    """A device connected with paho (what the Python device SDK runs on) from `SOURCE`."""

    def __init__(self, hub, rm, device_id: str, websockets: bool):
        paho = pytest.importorskip("paho.mqtt.client")
        key = rm.create_device_with_sas(device_id, None, None, "enabled").authentication.symmetric_key.primary_key
        self.device_id = device_id
        self.client = paho.Client(
            client_id=device_id,
            clean_session=True,
            protocol=paho.MQTTv311,
            transport="websockets" if websockets else "tcp",
        )
        if websockets:
            self.client.ws_set_options(path="/$iothub/websocket")
        self.client.username_pw_set(
            f"{hub.hostname}/{device_id}/?api-version=2021-04-12",
            sas(f"{hub.hostname}/devices/{device_id}", key),
        )
        self.client.tls_set(ca_certs=hub.ca_file)
        connected = threading.Event()
        result = {}

        def on_connect(client, userdata, flags, rc):
            result["rc"] = rc
            connected.set()

        self.client.on_connect = on_connect
        self.client.connect(hub.address, 443 if websockets else 8883, keepalive=60, bind_address=SOURCE)
        self.client.loop_start()
        assert connected.wait(WAIT_S), f"{device_id}: no CONNACK"
        assert result["rc"] == 0, f"{device_id}: CONNACK {result['rc']}"

    def send_telemetry(self, body: str) -> None:
        info = self.client.publish(f"devices/{self.device_id}/messages/events/", body, qos=1)
        info.wait_for_publish(timeout=WAIT_S)
        assert info.is_published(), f"{self.device_id}: no PUBACK for {body!r}"

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def test_the_per_address_cap_and_the_handshake_timeout_hold_while_devices_work(hub, rm):
    over_mqtt = Device(hub, rm, "limits-mqtt", websockets=False)
    over_websocket = Device(hub, rm, "limits-ws", websockets=True)
    try:
        over_mqtt.send_telemetry("before")
        over_websocket.send_telemetry("before")

        # The third place: a client that connects and never starts its TLS handshake.
        silent_since = time.monotonic()
        silent = tcp_from(hub, 8883)
        try:
            # The cap is reached (the WebSocket session keeps its place after the upgrade): one
            # more connection is closed at once, whichever port it comes to.
            assert_refused(hub, 8883)
            assert_refused(hub, 443)
            over_mqtt.send_telemetry("at the cap")
            over_websocket.send_telemetry("at the cap")

            # The silent client is dropped when the handshake timeout runs out, not before.
            assert closed_by_server(silent, HANDSHAKE_TIMEOUT_S + WAIT_S), "the silent client is dropped"
            waited = time.monotonic() - silent_since
            assert waited >= HANDSHAKE_TIMEOUT_S - 0.5, f"dropped after {waited:.1f} s"
        finally:
            silent.close()

        # Its place is free again: a client that completes its handshake is admitted, and the
        # one after it is refused.
        with tls_handshake(hub, 443) as admitted:
            admitted.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: keep-alive\r\n\r\n")
            admitted.settimeout(WAIT_S)
            assert admitted.recv(1024).startswith(b"HTTP/1.1 "), "the admitted connection is served"
            assert_refused(hub, 443)
            over_mqtt.send_telemetry("after")
            over_websocket.send_telemetry("after")
    finally:
        over_mqtt.close()
        over_websocket.close()


def test_connections_from_other_addresses_are_counted_apart(hub, rm):
    """Clients of other source addresses are not refused because one address is at its cap."""
    held = [tls_handshake(hub, 8883, OTHER_SOURCE) for _ in range(CAP)]
    try:
        assert_refused(hub, 8883, OTHER_SOURCE)
        # The registry manager connects from the default source address. Its client (msrest)
        # opens a session, and a connection, per call and leaves the old ones open until the
        # garbage collector frees them: collect the earlier test's, so they do not count
        # against the cap here.
        gc.collect()
        rm.create_device_with_sas("limits-other", None, None, "enabled")
        assert rm.get_device("limits-other").device_id == "limits-other"
        with tls_handshake(hub, 8883, source=None) as other:
            assert other.version() is not None, "a client of another address completes its handshake"
    finally:
        for s in held:
            s.close()
