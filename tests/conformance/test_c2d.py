"""Cloud-to-device messages with real clients against a running ironhub.

The service side uses ironhub's REST send (IoT Hub itself sends C2D only over AMQP) and the
Python service SDK (azure-iot-hub) for devices, purge and feedback; the device side is the
Python device SDK (azure-iot-device, MQTT on 8883) and mosquitto_sub.

The server is conftest's `hub` fixture on loopback 127.0.0.6 (ports 443 and 8883), wrapped with
the helpers below. Needs `mosquitto_sub` for the mosquitto and Tasmota tests.
"""

import base64
import hashlib
import hmac
import json
import os
import socket
import subprocess
import tempfile
import threading
import time
import urllib.parse
import uuid
from pathlib import Path

import pytest
import requests

from conftest import require_tool, test_address

IRONHUB_ADDRESS = HOST = test_address("127.0.0.6")
API = "api-version=2021-04-12"


def sas_token(resource, key, policy=None, ttl=3600):
    """An IoT Hub SAS token (the algorithm every SDK uses)."""
    expiry = int(time.time()) + ttl
    sr = urllib.parse.quote(resource, safe="")
    sig = base64.b64encode(
        hmac.new(base64.b64decode(key), f"{sr}\n{expiry}".encode(), hashlib.sha256).digest()
    ).decode()
    token = f"SharedAccessSignature sr={sr}&sig={urllib.parse.quote(sig, safe='')}&se={expiry}"
    return token + (f"&skn={policy}" if policy else "")


class Hub:
    """The module's server (conftest's `IronHub`) with what the C2D tests need."""

    def __init__(self, server):
        self.server = server
        self.data_dir = str(server.data_dir)
        self.connection_string = server.connection_string
        self.ca_path = server.ca_file
        self.ca_text = Path(self.ca_path).read_text()
        parts = server.connection_string_parts()
        self.policy, self.policy_key = parts["SharedAccessKeyName"], parts["SharedAccessKey"]

    def service_headers(self):
        return {"Authorization": sas_token(HOST, self.policy_key, self.policy)}

    def registry(self):
        from azure.iot.hub import IoTHubRegistryManager
        return IoTHubRegistryManager.from_connection_string(self.connection_string)

    def create_device(self, prefix="dev"):
        device_id = f"{prefix}-{uuid.uuid4().hex[:8]}"
        device = self.registry().create_device_with_sas(device_id, "", "", "enabled")
        key = device.authentication.symmetric_key.primary_key
        return device_id, key

    def device_connection_string(self, device_id, key):
        return f"HostName={HOST};DeviceId={device_id};SharedAccessKey={key}"

    def send(self, device_id, body, headers=None):
        """ironhub's REST send; returns the message id."""
        r = requests.post(
            f"https://{HOST}/devices/{device_id}/messages/deviceBound?{API}",
            data=body, headers={**self.service_headers(), **(headers or {})},
            verify=self.ca_path, timeout=10,
        )
        assert r.status_code == 204, r.text
        return r.headers["iothub-messageid"]

    def feedback(self):
        """Every feedback record waiting, completing the batches read."""
        records = []
        while True:
            r = requests.get(f"https://{HOST}/messages/serviceBound/feedback?{API}",
                             headers=self.service_headers(), verify=self.ca_path, timeout=10)
            if r.status_code == 204:
                return records
            assert r.status_code == 200, r.text
            records.extend(r.json())
            token = r.headers["ETag"].strip('"')
            done = requests.delete(
                f"https://{HOST}/messages/serviceBound/feedback/{token}?{API}",
                headers=self.service_headers(), verify=self.ca_path, timeout=10)
            assert done.status_code == 204


@pytest.fixture(scope="module")
def hub(hub):
    """Overrides conftest's `hub` with the C2D helpers around the same server."""
    return Hub(hub)


def device_client(hub, device_id, key, websockets=False):
    from azure.iot.device import IoTHubDeviceClient
    return IoTHubDeviceClient.create_from_connection_string(
        hub.device_connection_string(device_id, key), server_verification_cert=hub.ca_text,
        websockets=websockets)


# The Python device SDK over MQTT (8883) and over MQTT over WebSocket (443, `websockets=True`).
TRANSPORTS = pytest.mark.parametrize("websockets", [False, True], ids=["mqtt", "websocket"])


@TRANSPORTS
def test_python_device_receives_body_id_content_type_and_properties(hub, websockets):
    device_id, key = hub.create_device()
    client = device_client(hub, device_id, key, websockets)
    client.connect()
    try:
        # Sent before the device subscribes: queued, then delivered on subscription.
        mid = hub.send(device_id, b'{"on":true}', {
            "iothub-messageid": "msg-1",
            "iothub-correlationid": "corr-1",
            "iothub-ack": "full",
            "Content-Type": "application/json",
            "Content-Encoding": "utf-8",
            "iothub-app-color": "red",
            "iothub-app-path": "a/b&c=d",
        })
        assert mid == "msg-1"
        message = client.receive_message(timeout=15)
        assert message is not None, "no C2D message arrived"
        assert message.data == b'{"on":true}'
        assert message.message_id == "msg-1"
        assert message.correlation_id == "corr-1"
        assert message.content_type == "application/json"
        assert message.content_encoding == "utf-8"
        assert message.ack == "full"
        assert message.custom_properties == {"color": "red", "path": "a/b&c=d"}
        assert message.expiry_time_utc, "the expiry travels as $.exp"
    finally:
        client.shutdown()
    # The SDK PUBACKs; the queue is empty and the sender gets Success feedback.
    deadline = time.time() + 10
    records = []
    while time.time() < deadline and not records:
        records = [r for r in hub.feedback() if r["deviceId"] == device_id]
        time.sleep(0.2)
    assert [r["statusCode"] for r in records] == ["Success"]
    assert records[0]["originalMessageId"] == "msg-1"
    assert hub.registry().get_device(device_id).cloud_to_device_message_count == 0


def test_on_message_received_handler_gets_live_messages(hub):
    device_id, key = hub.create_device()
    client = device_client(hub, device_id, key)
    got = []
    arrived = threading.Event()

    def handler(message):
        got.append(message)
        arrived.set()

    client.on_message_received = handler
    client.connect()
    try:
        time.sleep(0.5)
        hub.send(device_id, b"live", {"iothub-app-k": "v"})
        assert arrived.wait(15), "the handler was not called"
        assert got[0].data == b"live"
        assert got[0].custom_properties == {"k": "v"}
        assert len(got[0].message_id) == 36, "ironhub generates a UUID message id"
    finally:
        client.shutdown()


@TRANSPORTS
def test_message_sent_while_disconnected_arrives_after_reconnect_without_resubscribing(hub, websockets):
    device_id, key = hub.create_device()
    client = device_client(hub, device_id, key, websockets)
    got = []
    arrived = threading.Event()

    def handler(message):
        got.append(message)
        arrived.set()

    client.on_message_received = handler  # subscribes once (clean session 0)
    client.connect()
    try:
        time.sleep(0.5)
        client.disconnect()
        registry = hub.registry()
        deadline = time.time() + 5
        while registry.get_device(device_id).connection_state != "Disconnected":
            assert time.time() < deadline
            time.sleep(0.1)
        hub.send(device_id, b"while you were away", {"iothub-messageid": "away-1"})
        assert registry.get_device(device_id).cloud_to_device_message_count == 1
        client.connect()  # PYDEV does not subscribe again
        assert arrived.wait(15), "the queued message was not delivered after reconnect"
        assert got[0].data == b"while you were away"
        assert got[0].message_id == "away-1"
    finally:
        client.shutdown()


def _mosquitto_sub(hub, device_id, key, qos, count=1):
    return subprocess.Popen(
        ["mosquitto_sub", "-h", HOST, "-p", "8883", "--cafile", hub.ca_path,
         "-V", "mqttv311", "-i", device_id,
         "-u", f"{HOST}/{device_id}/?api-version=2021-04-12",
         "-P", sas_token(f"{HOST}/devices/{device_id}", key),
         "-t", f"devices/{device_id}/messages/devicebound/#", "-q", str(qos),
         "-v", "-C", str(count), "-W", "20"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )


def _wait_connected(hub, device_id):
    registry = hub.registry()
    deadline = time.time() + 10
    while registry.get_device(device_id).connection_state != "Connected":
        assert time.time() < deadline, "mosquitto_sub did not connect"
        time.sleep(0.1)
    time.sleep(0.3)  # let the SUBSCRIBE land


def test_mosquitto_sub_receives_at_qos1(hub):
    require_tool("mosquitto_sub")
    device_id, key = hub.create_device()
    sub = _mosquitto_sub(hub, device_id, key, qos=1)
    _wait_connected(hub, device_id)
    hub.send(device_id, b"hello mosquitto", {"iothub-messageid": "mq-1", "iothub-app-a": "1"})
    out, err = sub.communicate(timeout=30)
    assert sub.returncode == 0, err
    topic, payload = out.strip().split(" ", 1)
    assert payload == "hello mosquitto"
    assert topic.startswith(f"devices/{device_id}/messages/devicebound/%24.mid=mq-1&")
    assert topic.endswith("&a=1")
    assert len(topic.split("/")) == 5, "the property bag is path segment 4"


def test_tasmota_topic_property_comes_last_with_upper_case_hex(hub):
    require_tool("mosquitto_sub")
    device_id, key = hub.create_device("tasmota")
    # Tasmota subscribes at QoS 0 (PubSubClient); it searches the topic for TOPIC= and takes
    # everything after it, replacing %2F.
    sub = _mosquitto_sub(hub, device_id, key, qos=0)
    _wait_connected(hub, device_id)
    hub.send(device_id, b"ON", {"iothub-ack": "full", "iothub-app-topic": "cmnd/X/POWER"})
    out, err = sub.communicate(timeout=30)
    assert sub.returncode == 0, err
    topic, payload = out.strip().split(" ", 1)
    assert payload == "ON"
    assert topic.endswith("&iothub-ack=full&topic=cmnd%2FX%2FPOWER"), topic
    command = topic.upper().split("TOPIC=", 1)[1].replace("%2F", "/")
    assert command == "CMND/X/POWER"


def test_purge_feedback_and_queue_depth_through_the_service_sdk(hub):
    from azure.iot.hub import IoTHubHttpRuntimeManager
    from msrest.exceptions import HttpOperationError

    device_id, _ = hub.create_device()
    for i in range(50):
        hub.send(device_id, f"{i}".encode(), {"iothub-ack": "negative"})
    r = requests.post(f"https://{HOST}/devices/{device_id}/messages/deviceBound?{API}",
                      data=b"51st", headers=hub.service_headers(), verify=hub.ca_path)
    assert r.status_code == 403
    assert r.headers["iothub-errorcode"] == "DeviceMaximumQueueDepthExceeded"
    assert hub.registry().get_device(device_id).cloud_to_device_message_count == 50

    registry = hub.registry()
    result = registry.protocol.cloud_to_device_messages.purge_cloud_to_device_message_queue(
        device_id)
    assert result.total_messages_purged == 50
    assert result.device_id == device_id
    assert registry.get_device(device_id).cloud_to_device_message_count == 0

    runtime = IoTHubHttpRuntimeManager.from_connection_string(hub.connection_string)
    raw = runtime.protocol.cloud_to_device_messages.receive_feedback_notification(raw=True)
    assert raw.response.status_code == 200
    records = raw.response.json()
    mine = [r for r in records if r["deviceId"] == device_id]
    assert mine and all(r["statusCode"] == "Purged" for r in mine)
    token = raw.response.headers["ETag"].strip('"')
    runtime.abandon_feedback_notification(token)
    raw = runtime.protocol.cloud_to_device_messages.receive_feedback_notification(raw=True)
    token = raw.response.headers["ETag"].strip('"')
    runtime.complete_feedback_notification(token)
    with pytest.raises(HttpOperationError):
        runtime.complete_feedback_notification(token)
    hub.feedback()  # drain the rest for other tests
