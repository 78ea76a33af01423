"""Routing, the parts that keep it running (issue 9): module twins and module identities emit
twin change and lifecycle events with the module's id, routed by a condition, from changes
made with the Python service SDK; the health of an external endpoint as ARM's
`routingEndpointsHealth` answers it (REST `GET /routingEndpointsHealth` and
`ironhub hub message-endpoint health`): a webhook that is down turns `unhealthy`, then `dead`
once a message is dead-lettered, and `healthy` when it takes messages again; file endpoint
batches in IoT Hub's ranges on a server not started with `--allow-small-file-batches`.
"""

from __future__ import annotations

import base64
import json
import subprocess
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from azure.iot.device import IoTHubDeviceClient, Message
from azure.iot.hub.models import Twin, TwinProperties

from conftest import ironhub_bin, test_address
from routing_helpers import put_routing, rest, stream_events

IRONHUB_ADDRESS = test_address("127.0.0.190")
WEBHOOK_ADDRESS = test_address("127.0.0.191")
WEBHOOK_PORT = 8191
TIMEOUT_S = 60
WAIT_S = 30


def cli(hub, *args: str):
    proc = subprocess.run([ironhub_bin(), *args, "--data-dir", str(hub.data_dir)], capture_output=True,
                          text=True, timeout=TIMEOUT_S, stdin=subprocess.DEVNULL)
    assert proc.returncode == 0, f"`{' '.join(args)}` exited {proc.returncode}:\n{proc.stdout}\n{proc.stderr}"
    return json.loads(proc.stdout)


def wait_for(what: str, check):
    """Runs `check` until it returns something true or WAIT_S pass (endpoints deliver, and
    record their health, in the background)."""
    deadline = time.monotonic() + WAIT_S
    while True:
        result = check()
        if result or time.monotonic() > deadline:
            break
        time.sleep(0.25)
    assert result, f"timed out waiting for {what}"
    return result


def test_module_twin_and_lifecycle_events_are_routed_by_condition(hub):
    r = put_routing(hub, {
        "endpoints": {"eventHubs": [{"name": "modules", "partitionCount": 1}]},
        "routes": [
            {"name": "eco", "source": "TwinChangeEvents", "isEnabled": True, "endpointNames": ["modules"],
             "condition": "opType = 'updateTwin' AND IS_DEFINED(moduleId) AND $body.properties.desired.mode = 'eco'"},
            {"name": "modlife", "source": "DeviceLifecycleEvents", "isEnabled": True, "endpointNames": ["modules"],
             "condition": "IS_DEFINED(moduleId)"},
        ],
    })
    assert r.status_code == 200, r.text
    rm = hub.registry_manager()
    rm.create_device_with_sas("plc-1", None, None, "enabled")
    rm.create_module_with_sas("plc-1", "controller", None, None, None)
    # Not selected: another mode, and a change of the device's own twin.
    rm.update_module_twin("plc-1", "controller", Twin(properties=TwinProperties(desired={"mode": "turbo"})))
    rm.update_twin("plc-1", Twin(properties=TwinProperties(desired={"mode": "eco"})))
    rm.update_module_twin("plc-1", "controller", Twin(properties=TwinProperties(desired={"mode": "eco"})))
    rm.delete_module("plc-1", "controller")

    events = wait_for("the module events", lambda: (lambda e: e if len(e) >= 3 else [])(
        [e for e in stream_events(hub, "modules") if e.get("deviceId") == "plc-1"]))
    assert [e["applicationProperties"]["opType"] for e in events] == [
        "createDeviceIdentity", "updateTwin", "deleteDeviceIdentity"]
    for e in events:
        app, system = e["applicationProperties"], e["systemProperties"]
        assert app["moduleId"] == "controller"
        assert app["deviceId"] == "plc-1"
        assert app["hubName"] and app["operationTimestamp"]
        assert system["iothub-connection-module-id"] == "controller"
        assert system["iothub-connection-device-id"] == "plc-1"
    twin = json.loads(base64.b64decode(events[1]["bodyBase64"]))
    assert twin["properties"]["desired"]["mode"] == "eco"
    assert events[1]["applicationProperties"]["iothub-message-schema"] == "twinChangeNotification"
    assert events[1]["systemProperties"]["iothub-message-source"] == "twinChangeEvents"
    assert json.loads(base64.b64decode(events[0]["bodyBase64"]))["moduleId"] == "controller"


class Receiver(BaseHTTPRequestHandler):
    """Takes every POST."""

    received: list[bytes] = []

    def do_POST(self):  # noqa: N802 (http.server's name)
        Receiver.received.append(self.rfile.read(int(self.headers.get("Content-Length", "0"))))
        self.send_response(200)
        self.end_headers()

    def log_message(self, *args):
        pass


def health(hub, name: str) -> dict:
    r = rest(hub, "GET", "/routingEndpointsHealth")
    assert r.status_code == 200, r.text
    return next(h for h in r.json()["value"] if h["endpointId"] == name)


def send(hub, device_id: str, body: bytes, key: str):
    client = IoTHubDeviceClient.create_from_connection_string(
        f"HostName={hub.hostname};DeviceId={device_id};SharedAccessKey={key}",
        server_verification_cert=open(hub.ca_file).read())
    client.connect()
    try:
        client.send_message(Message(body, content_encoding="utf-8", content_type="application/json"))
    finally:
        client.shutdown()


def test_a_webhook_that_is_down_turns_unhealthy_then_dead_then_healthy_when_it_is_back(hub):
    doc = rest(hub, "GET", "/routing").json()
    doc["endpoints"]["webhooks"] = [{"name": "Hook", "url": f"http://{WEBHOOK_ADDRESS}:{WEBHOOK_PORT}/in",
                                     "maxDeliveryCount": 3}]
    doc["routes"].append({"name": "all", "source": "DeviceMessages", "condition": "true",
                          "endpointNames": ["Hook"], "isEnabled": True})
    r = put_routing(hub, doc)
    assert r.status_code == 200, r.text
    assert health(hub, "Hook")["healthStatus"] == "unknown"
    key = hub.registry_manager().create_device_with_sas(
        "meter-1", None, None, "enabled").authentication.symmetric_key.primary_key

    # Nothing listens: the pump retries (unhealthy), then dead-letters the message (dead).
    send(hub, "meter-1", b'{"n": 1}', key)
    unhealthy = wait_for("unhealthy", lambda: (lambda h: h if h["healthStatus"] == "unhealthy" else None)(
        health(hub, "Hook")))
    assert unhealthy["lastKnownError"]
    assert unhealthy["lastKnownErrorTime"].endswith(" GMT")
    assert unhealthy["lastSendAttemptTime"].endswith(" GMT")
    assert "lastSuccessfulSendAttemptTime" not in unhealthy
    dead = wait_for("dead", lambda: (lambda h: h if h["healthStatus"] == "dead" else None)(health(hub, "Hook")))
    assert dead["lastKnownError"]

    # The CLI answers the same, by az's flag names.
    shown = cli(hub, "hub", "message-endpoint", "health", "--endpoint-name", "hook")
    assert shown["endpointId"] == "Hook" and shown["healthStatus"] == "dead"
    assert any(h["endpointId"] == "Hook" for h in cli(hub, "hub", "message-endpoint", "health"))

    # The webhook comes back: the next message is delivered and the endpoint is healthy.
    server = ThreadingHTTPServer((WEBHOOK_ADDRESS, WEBHOOK_PORT), Receiver)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        send(hub, "meter-1", b'{"n": 2}', key)
        healthy = wait_for("healthy", lambda: (lambda h: h if h["healthStatus"] == "healthy" else None)(
            health(hub, "Hook")))
        assert healthy["lastSuccessfulSendAttemptTime"].endswith(" GMT")
        assert b'{"n": 2}' in Receiver.received
    finally:
        server.shutdown()
        server.server_close()


def test_file_batches_outside_iot_hubs_ranges_are_refused(hub):
    before = rest(hub, "GET", "/routing")
    for field, value in [("batchFrequencyInSeconds", 59), ("batchFrequencyInSeconds", 721),
                         ("maxChunkSizeInBytes", 10485759), ("maxChunkSizeInBytes", 524288001)]:
        doc = before.json()
        doc["endpoints"]["storageContainers"] = [{"name": "cold", "containerName": "cold", field: value}]
        r = put_routing(hub, doc)
        assert r.status_code == 400, r.text
        assert r.headers.get("iothub-errorcode") == "ArgumentInvalid"
        assert field in r.text
    assert rest(hub, "GET", "/routing").json() == before.json()
    doc = before.json()
    doc["endpoints"]["storageContainers"] = [{"name": "cold", "containerName": "cold",
                                              "batchFrequencyInSeconds": 60, "maxChunkSizeInBytes": 10485760}]
    r = put_routing(hub, doc)
    assert r.status_code == 200, r.text
