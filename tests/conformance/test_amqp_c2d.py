"""Cloud-to-device messages sent by the real service SDKs over AMQP (port 5671), received by
the Python device SDK over MQTT: Python `IoTHubRegistryManager.send_c2d_message` (uamqp, SASL
MSSBCBS then a CBS put-token) and Node `azure-iothub` `Client.send` (rhea, no SASL, CBS), with
the delivery feedback read through `Client.getFeedbackReceiver`. Node runs `node/c2d.js`,
trusting the server's CA through `NODE_EXTRA_CA_CERTS`.
"""

from __future__ import annotations

import queue

import pytest
from azure.iot.device import IoTHubDeviceClient

from conftest import node_json

IRONHUB_ADDRESS = "127.0.0.91"
WAIT_S = 20
NODE_TIMEOUT_S = 60


@pytest.fixture(scope="module")
def registry(amqp_registry):
    """conftest's registry manager that sends C2D over AMQP trusting the server's CA."""
    return amqp_registry


class Device:
    """A device connected with the Python SDK over MQTT, collecting its C2D messages."""

    def __init__(self, hub, registry, device_id: str):
        key = registry.create_device_with_sas(device_id, None, None, "enabled").authentication.symmetric_key.primary_key
        cs = f"HostName={hub.hostname};DeviceId={device_id};SharedAccessKey={key}"
        self.client = IoTHubDeviceClient.create_from_connection_string(
            cs, server_verification_cert=open(hub.ca_file).read()
        )
        self.messages: queue.Queue = queue.Queue()
        self.client.on_message_received = self.messages.put
        self.client.connect()

    def next(self):
        try:
            return self.messages.get(timeout=WAIT_S)
        except queue.Empty:
            raise AssertionError(f"no cloud-to-device message within {WAIT_S} s") from None

    def close(self):
        self.client.shutdown()


def run_node(hub, *args: str) -> dict:
    env = {"NODE_EXTRA_CA_CERTS": hub.ca_file, "IRONHUB_CONNECTION_STRING": hub.connection_string}
    return node_json("c2d.js", *args, env=env, timeout=NODE_TIMEOUT_S)


def test_python_service_sdk_sends_to_an_mqtt_device(hub, registry):
    device = Device(hub, registry, "c2d-py")
    try:
        registry.send_c2d_message(
            "c2d-py",
            "hello over AMQP",
            properties={
                "messageId": "py-1",
                "correlationId": "corr-1",
                "contentType": "text/plain",
                "contentEncoding": "utf-8",
                "colour": "green",
            },
        )
        m = device.next()
        assert m.data == b"hello over AMQP"
        assert m.message_id == "py-1"
        assert m.correlation_id == "corr-1"
        assert m.content_type == "text/plain"
        assert m.content_encoding == "utf-8"
        assert m.custom_properties["colour"] == "green"
    finally:
        device.close()


def test_python_service_sdk_unknown_device_fails(hub, registry):
    with pytest.raises(Exception, match="C2D message send failure"):
        registry.send_c2d_message("no-such-device", "lost")
    # The connection stays usable after a refused message.
    device = Device(hub, registry, "c2d-py-after")
    try:
        registry.send_c2d_message("c2d-py-after", "still here")
        assert device.next().data == b"still here"
    finally:
        device.close()


def test_node_service_sdk_sends_and_reads_feedback(hub, registry):
    device = Device(hub, registry, "c2d-node")
    try:
        out = run_node(hub, "send", "--device-id", "c2d-node", "--text", "from node", "--ack", "full", "--feedback")
        assert out["sent"] == "MessageEnqueued"
        m = device.next()
        assert m.data == b"from node"
        assert m.message_id == out["messageId"]
        assert m.correlation_id == "node-correlation"
        assert m.custom_properties["colour"] == "blue"
        assert m.ack == "full"
        feedback = out["feedback"]
        assert feedback["contentType"] == "application/vnd.microsoft.iothub.feedback.json"
        (record,) = [r for r in feedback["records"] if r["originalMessageId"] == out["messageId"]]
        assert record["statusCode"] == "Success"
        assert record["deviceId"] == "c2d-node"
    finally:
        device.close()


def test_node_service_sdk_unknown_device_is_device_not_found(hub):
    out = run_node(hub, "send", "--device-id", "no-such-device", "--text", "x")
    assert out["sendError"]["name"] == "DeviceNotFoundError", out


def test_oversized_messages_are_refused_and_nothing_is_queued(hub, registry):
    """IoT Hub's cloud-to-device limit is 64 KiB: a larger message is rejected
    (`amqp:link:message-size-exceeded`), nothing is queued, and the link keeps working."""
    device = Device(hub, registry, "c2d-big")
    try:
        with pytest.raises(Exception, match="C2D message send failure"):
            registry.send_c2d_message("c2d-big", "x" * (64 * 1024 + 1))
        assert registry.get_device("c2d-big").cloud_to_device_message_count == 0
        registry.send_c2d_message("c2d-big", "small")
        assert device.next().data == b"small"
    finally:
        device.close()
