"""Health endpoints and the graceful drain against real clients: `/health/live` and
`/health/ready` over HTTPS and over the plain-HTTP `--health-listen` port, then SIGTERM while
Python device SDK clients (MQTT and MQTT over WebSocket) send telemetry: each client sees its
connection closed, every message the SDK had acknowledged is in the event log after a
restart, and the devices were recorded `Disconnected` by the drain itself (the restart finds
none left connected)."""

from __future__ import annotations

import os
import signal
import threading

import requests
from azure.iot.device import IoTHubDeviceClient, Message

from conftest import STOP_TIMEOUT_S, test_address
from dps_helpers import stored_events, wait_for

IRONHUB_ADDRESS = test_address("127.0.0.180")
HEALTH_PORT = 8080
WAIT_S = 20.0


def ironhub_args(workdir) -> list[str]:
    return ["--health-listen", f"{IRONHUB_ADDRESS}:{HEALTH_PORT}", "--drain-timeout-seconds", "5"]


def test_live_and_ready_over_https_and_plain_http(hub):
    for base, verify in ((f"https://{hub.address}", hub.ca_file), (f"http://{hub.address}:{HEALTH_PORT}", True)):
        live = requests.get(f"{base}/health/live", timeout=10, verify=verify)
        assert live.status_code == 200, live.text
        ready = requests.get(f"{base}/health/ready", timeout=10, verify=verify)
        assert ready.status_code == 200, ready.text
        assert ready.json() == {"ready": True}
        assert ready.headers["cache-control"] == "no-store"
    # No api-version, no credentials: the rest of the HTTPS API still asks for both.
    other = requests.get(f"https://{hub.address}/devices", params={"api-version": "2021-04-12"},
                         timeout=10, verify=hub.ca_file)
    assert other.status_code == 401, other.text


class Sender:
    """A device SDK client sending telemetry in a thread until its connection fails; keeps the
    bodies whose send the SDK completed (PUBACK received)."""

    def __init__(self, hub, rm, device_id: str, websockets: bool):
        d = rm.create_device_with_sas(device_id, None, None, "enabled")
        key = d.authentication.symmetric_key.primary_key
        cs = f"HostName={hub.hostname};DeviceId={device_id};SharedAccessKey={key}"
        self.client = IoTHubDeviceClient.create_from_connection_string(
            cs, server_verification_cert=open(hub.ca_file).read(), websockets=websockets,
            connection_retry=False)
        self.dropped = threading.Event()
        self.client.on_connection_state_change = self._state_changed
        self.client.connect()
        self.device_id = device_id
        self.acknowledged: list[str] = []
        self.thread = threading.Thread(target=self._send, daemon=True)
        self.thread.start()

    def _state_changed(self) -> None:
        if not self.client.connected:
            self.dropped.set()

    def _send(self) -> None:
        for i in range(100000):
            body = f"{self.device_id}-{i}"
            try:
                self.client.send_message(Message(body))
            except Exception:  # the drain closed the connection (the SDK raises its own types)
                return
            self.acknowledged.append(body)
            if self.dropped.is_set():
                return


def test_sigterm_drains_device_connections_after_their_acknowledgements(hub, rm):
    senders = [Sender(hub, rm, "drain-mqtt", False), Sender(hub, rm, "drain-ws", True)]
    try:
        wait_for(lambda: all(len(s.acknowledged) >= 3 for s in senders), what="telemetry flowing")
        assert requests.get(f"http://{hub.address}:{HEALTH_PORT}/health/ready", timeout=10).status_code == 200
        for s in senders:
            assert rm.get_device(s.device_id).connection_state == "Connected"

        os.killpg(hub.proc.pid, signal.SIGTERM)
        code = hub.proc.wait(timeout=STOP_TIMEOUT_S)
        hub.proc = None
        assert code == 0, hub.logs()
        for s in senders:
            wait_for(lambda: s.dropped.is_set() or not s.client.connected,
                     what=f"{s.device_id}: the SDK to see its connection closed")
            s.thread.join(WAIT_S)
            assert not s.thread.is_alive(), f"{s.device_id}: the sender is still blocked"
        log = open(hub.stderr_path).read()
        assert "draining" in log, log
        assert "the drain timed out" not in log, log
        assert log.count("end=Drained") >= 2, log

        hub.start()
        for s in senders:
            stored = [e["body"] for e in stored_events(hub, s.device_id)]
            missing = [b for b in s.acknowledged if b not in stored]
            assert not missing, f"{s.device_id}: acknowledged but not stored: {missing}"
            assert rm.get_device(s.device_id).connection_state == "Disconnected"
        # The drain recorded the devices disconnected: the restart found none to mark.
        restarted = log_of_last_start(hub)
        assert "marked devices connected before the restart" not in restarted, restarted
    finally:
        for s in senders:
            # Bounded: the SDK's shutdown waits on its own disconnect.
            closing = threading.Thread(target=_shut_down, args=(s.client,), daemon=True)
            closing.start()
            closing.join(WAIT_S)


def _shut_down(client) -> None:
    try:
        client.shutdown()
    except Exception:
        pass


def log_of_last_start(hub) -> str:
    text = open(hub.stderr_path).read()
    return text.rsplit("===== ironhub start #", 1)[-1]
