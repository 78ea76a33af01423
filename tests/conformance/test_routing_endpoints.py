"""Routing to external endpoints (issue 9, part 3) against real clients: telemetry from the
Python device SDK routed by conditions to a webhook (an HTTP receiver in the test), a file
endpoint (JSON lines as IoT Hub's storage endpoint writes them) and a NATS subject (a real
`nats-server`, read with `nats-py`); a webhook that is down does not hold back the others;
bad endpoint settings are refused with IoT Hub's 400 and change nothing.
"""

from __future__ import annotations

import asyncio
import base64
import json
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import nats
import pytest
from azure.iot.device import IoTHubDeviceClient, Message

from conftest import test_address
from routing_helpers import put_routing, rest, stream_response
from services import nats_server

IRONHUB_ADDRESS = test_address("127.0.0.120")
WEBHOOK_ADDRESS = test_address("127.0.0.121")
NATS_ADDRESS = test_address("127.0.0.122")
WAIT_S = 30


def ironhub_args(_workdir) -> list[str]:
    """File chunks closed every second, which IoT Hub's ranges (60 s at least) do not allow."""
    return ["--allow-small-file-batches"]


class Receiver(BaseHTTPRequestHandler):
    """Keeps every POST's headers and body."""

    received: list[tuple[dict, bytes]] = []
    arrived = threading.Condition()

    def do_POST(self):  # noqa: N802 (http.server's name)
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        with Receiver.arrived:
            Receiver.received.append(({k.lower(): v for k, v in self.headers.items()}, body))
            Receiver.arrived.notify_all()
        self.send_response(200)
        self.end_headers()

    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def endpoints(hub):
    """The hub routing to a webhook, a file endpoint and a NATS subject, with a subscriber."""
    server = ThreadingHTTPServer((WEBHOOK_ADDRESS, 0), Receiver)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    files = Path(tempfile.mkdtemp(prefix="ironhub-files-"))
    with nats_server(NATS_ADDRESS, 4222) as nats_url:
        loop = asyncio.new_event_loop()
        published: list = []

        async def keep(message):
            published.append(message)

        async def subscribe():
            connection = await nats.connect(nats_url)
            await connection.subscribe("telemetry.>", cb=keep)
            await connection.flush()
            return connection

        connection = loop.run_until_complete(subscribe())
        doc = {
            "endpoints": {
                "storageContainers": [{"name": "cold", "containerName": str(files), "encoding": "json",
                                       "batchFrequencyInSeconds": 1}],
                "webhooks": [{"name": "hook", "url": f"http://{WEBHOOK_ADDRESS}:{server.server_port}/in",
                              "headers": {"x-api-key": "k1"}}],
                "natsSubjects": [{"name": "bus", "url": nats_url, "subject": "telemetry.{deviceId}"}],
            },
            "routes": [
                {"name": "critical", "source": "DeviceMessages", "condition": "level = 'critical'",
                 "endpointNames": ["hook"], "isEnabled": True},
                {"name": "archive", "source": "DeviceMessages", "condition": "true",
                 "endpointNames": ["cold"], "isEnabled": True},
                {"name": "hot", "source": "DeviceMessages", "condition": "$body.temperature > 30",
                 "endpointNames": ["bus"], "isEnabled": True},
            ],
        }
        r = put_routing(hub, doc)
        assert r.status_code == 200, r.text
        yield hub, files, published, loop
        loop.run_until_complete(connection.close())
        loop.close()
    server.shutdown()


def send(hub, device_id: str, messages: list[tuple[bytes, dict]]):
    rm = hub.registry_manager()
    key = rm.create_device_with_sas(device_id, None, None, "enabled").authentication.symmetric_key.primary_key
    client = IoTHubDeviceClient.create_from_connection_string(
        f"HostName={hub.hostname};DeviceId={device_id};SharedAccessKey={key}",
        server_verification_cert=open(hub.ca_file).read())
    client.connect()
    try:
        for body, props in messages:
            m = Message(body, content_encoding="utf-8", content_type="application/json")
            m.custom_properties.update(props)
            client.send_message(m)
    finally:
        client.shutdown()


def file_records(files: Path) -> list[dict]:
    return [json.loads(line) for f in sorted(files.rglob("*")) if f.is_file() and ".ironhub-" not in str(f)
            for line in f.read_text().splitlines()]


def wait_until(what: str, check):
    """Runs `check` until it returns something true or WAIT_S pass (the endpoints deliver in
    the background); `check` waits on the receiver's condition or the NATS loop between tries."""
    result = check()
    deadline = time.monotonic() + WAIT_S
    with Receiver.arrived:
        while not result and time.monotonic() < deadline:
            Receiver.arrived.wait(0.2)
            result = check()
    assert result, f"timed out waiting for {what}"
    return result


def test_telemetry_reaches_each_endpoint_its_routes_select(endpoints):
    hub, files, published, loop = endpoints
    bodies = [
        (b'{"temperature": 35, "n": 1}', {"level": "critical"}),
        (b'{"temperature": 20, "n": 2}', {"level": "info"}),
        (b'{"temperature": 40, "n": 3}', {"level": "info"}),
    ]
    send(hub, "routed-1", bodies)

    hooks = wait_until("the webhook", lambda: [r for r in Receiver.received
                                               if r[0].get("iothub-connection-device-id") == "routed-1"])
    assert len(hooks) == 1
    headers, body = hooks[0]
    assert body == bodies[0][0]
    assert headers["content-type"] == "application/json"
    assert headers["iothub-app-level"] == "critical"
    assert headers["x-api-key"] == "k1"

    records = wait_until("the file endpoint", lambda: [r for r in file_records(files)
                         if r["SystemProperties"]["connectionDeviceId"] == "routed-1"] if len(
                             file_records(files)) >= 3 else [])
    assert [r["Body"]["n"] for r in records] == [1, 2, 3]
    assert records[0]["Properties"]["level"] == "critical"
    assert records[0]["SystemProperties"]["contentType"] == "application/json"
    assert records[0]["EnqueuedTimeUtc"].endswith("Z")

    def nats_messages():
        loop.run_until_complete(asyncio.sleep(0.1))
        return [m for m in published if m.subject == "telemetry.routed-1"]

    got = wait_until("the NATS subject", lambda: nats_messages() if len(nats_messages()) >= 2 else [])
    assert [m.data for m in got] == [bodies[0][0], bodies[2][0]]
    assert got[0].headers["iothub-app-level"] == "critical"


def test_bad_endpoint_settings_are_refused_and_change_nothing(endpoints):
    hub = endpoints[0]
    before = rest(hub, "GET", "/routing")
    doc = before.json()
    doc["endpoints"]["webhooks"].append({"name": "ftp", "url": "ftp://example/"})
    r = put_routing(hub, doc)
    assert r.status_code == 400, r.text
    assert r.headers.get("iothub-errorcode") == "ArgumentInvalid"
    assert "http://" in r.text and "ftp" in r.text
    doc = before.json()
    doc["endpoints"]["storageContainers"][0]["fileNameFormat"] = "{iothub}/{YYYY}"
    r = put_routing(hub, doc)
    assert r.status_code == 400 and "{partition}" in r.text, r.text
    doc = before.json()
    doc["endpoints"]["natsSubjects"][0]["password"] = "s3cret"
    r = put_routing(hub, doc)
    assert r.status_code == 400 and "s3cret" not in r.text, r.text
    after = rest(hub, "GET", "/routing")
    assert after.json() == before.json()


def test_an_endpoint_that_is_down_holds_back_no_other(endpoints):
    hub, files, published, loop = endpoints
    doc = rest(hub, "GET", "/routing").json()
    # A second webhook nobody listens on, selected by every message.
    doc["endpoints"]["webhooks"].append({"name": "nowhere", "url": f"http://{WEBHOOK_ADDRESS}:9/in",
                                         "maxDeliveryCount": 2})
    doc["routes"].append({"name": "everything", "source": "DeviceMessages", "condition": "true",
                          "endpointNames": ["nowhere"], "isEnabled": True})
    r = put_routing(hub, doc)
    assert r.status_code == 200, r.text
    send(hub, "routed-2", [(b'{"temperature": 50, "n": 9}', {"level": "critical"})])
    wait_until("the webhook", lambda: [r for r in Receiver.received
                                       if r[0].get("iothub-connection-device-id") == "routed-2"])
    wait_until("the file endpoint", lambda: [r for r in file_records(files)
                                             if r["SystemProperties"]["connectionDeviceId"] == "routed-2"])

    def nats_messages():
        loop.run_until_complete(asyncio.sleep(0.1))
        return [m for m in published if m.subject == "telemetry.routed-2"]

    assert wait_until("the NATS subject", nats_messages)[0].data == b'{"temperature": 50, "n": 9}'

    # The endpoint nobody listens on gives the message up after its two attempts: it is kept
    # as a dead letter, readable like an event stream as the endpoint `$deadletter.nowhere`.
    def dead_letters():
        params = {"from": "start", "timeout": "1", "endpoint": "$deadletter.nowhere"}
        with stream_response(hub, params, timeout=WAIT_S) as r:
            if r.status_code == 404:  # the pump has not opened its dead-letter stream yet
                return []
            assert r.status_code == 200, r.text
            return [json.loads(line) for line in r.iter_lines() if line]

    dead = wait_until("the dead letter", lambda: [e for e in dead_letters() if e.get("deviceId") == "routed-2"])
    assert base64.b64decode(dead[0]["bodyBase64"]) == b'{"temperature": 50, "n": 9}'
