"""IoT Edge's hub acting for the devices behind it (Azure docs, "Authenticate a downstream
device to Azure IoT Hub"): upstream it connects each child device under the child's own MQTT
client id and username, with a SAS token of its own `$edgeHub` module
(`sr={host}/devices/{edgeId}/modules/$edgeHub`, signed with that module's key, no `skn`:
the C# device SDK's `ClientAuthenticationForEdgeHubOnBehalfOf`). A paho client sends exactly
that: the child's telemetry (stored as the child's), twin, cloud-to-device messages and
direct methods work, and a device outside the Edge device's scope is refused.
"""

from __future__ import annotations

import json
import queue
import threading
import time

import paho.mqtt.client as paho
from azure.iot.hub.models import CloudToDeviceMethod

from conftest import test_address
from dps_helpers import stored_events
from test_amqp_module_inputs import edge_device
from test_device import mqtt_connack
from test_hostile import token

IRONHUB_ADDRESS = test_address("127.0.0.49")
WAIT_S = 20


def edge_hub_token(hub, rm, edge_id: str) -> str:
    key = rm.get_module(edge_id, "$edgeHub").authentication.symmetric_key.primary_key
    return token(f"{hub.hostname}/devices/{edge_id}/modules/$edgeHub", key, int(time.time()) + 3600)


def child_of(rm, edge_id: str, device_id: str) -> None:
    rm.create_device_with_sas(device_id, None, None, "enabled")
    device = rm.get_device(device_id)
    device.device_scope = rm.get_device(edge_id).device_scope
    rm.protocol.devices.create_or_update_identity(device_id, device, "*")


class Child:
    """A paho connection for `device_id` with `password`: every PUBLISH it gets in `inbox`."""

    def __init__(self, hub, device_id: str, password: str):
        self.inbox: queue.Queue = queue.Queue()
        self.connected = threading.Event()
        self.subscribed = queue.Queue()
        self.acked = queue.Queue()
        self.granted: dict = {}
        self.gone = threading.Event()
        c = paho.Client(client_id=device_id, clean_session=True, protocol=paho.MQTTv311)
        c.username_pw_set(f"{hub.hostname}/{device_id}/?api-version=2021-04-12", password)
        c.tls_set(ca_certs=hub.ca_file)
        c.on_connect = lambda client, userdata, flags, rc: self.connected.set()
        c.on_message = lambda client, userdata, m: self.inbox.put((m.topic, m.payload))
        c.on_subscribe = lambda client, userdata, mid, granted: (
            self.granted.__setitem__(mid, list(granted)), self.subscribed.put(mid))
        c.on_disconnect = lambda client, userdata, rc: self.gone.set()
        c.on_publish = lambda client, userdata, mid: self.acked.put(mid)
        c.connect(hub.address, 8883, keepalive=30)
        c.loop_start()
        assert self.connected.wait(WAIT_S), "no CONNACK"
        self.client = c

    def subscribe(self, topic: str) -> list:
        """Subscribes at QoS 1; the SUBACK's granted QoS list (128: refused)."""
        _, mid = self.client.subscribe(topic, qos=1)
        assert self.subscribed.get(timeout=WAIT_S) == mid
        return self.granted[mid]

    def publish(self, topic: str, payload: bytes) -> None:
        info = self.client.publish(topic, payload, qos=1)
        assert self.acked.get(timeout=WAIT_S) == info.mid

    def next(self, prefix: str):
        while True:
            topic, payload = self.inbox.get(timeout=WAIT_S)
            if topic.startswith(prefix):
                return topic, payload

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


def test_edge_hub_connects_a_child_with_its_own_token(hub, amqp_registry):
    rm = hub.registry_manager()
    edge_device(hub, "obo-edge", {})
    child_of(rm, "obo-edge", "obo-child")
    password = edge_hub_token(hub, rm, "obo-edge")
    child = Child(hub, "obo-child", password)
    try:
        child.publish("devices/obo-child/messages/events/k=v", b"from the child")
        child.subscribe("$iothub/twin/res/#")
        child.publish("$iothub/twin/GET/?$rid=1", b"")
        topic, body = child.next("$iothub/twin/res/")
        assert topic.startswith("$iothub/twin/res/200/"), topic
        assert "desired" in json.loads(body)

        child.subscribe("devices/obo-child/messages/devicebound/#")
        amqp_registry.send_c2d_message("obo-child", "to the child", {})
        topic, body = child.next("devices/obo-child/messages/devicebound/")
        assert body == b"to the child"

        child.subscribe("$iothub/methods/POST/#")
        answers: queue.Queue = queue.Queue()
        answered = threading.Thread(target=lambda: answers.put(rm.invoke_device_method(
            "obo-child", CloudToDeviceMethod(method_name="reboot", payload={}, response_timeout_in_seconds=15))))
        answered.start()
        topic, _ = child.next("$iothub/methods/POST/reboot/")
        rid = topic.split("$rid=")[1]
        child.publish(f"$iothub/methods/res/200/?$rid={rid}", b'{"ok": true}')
        answer = answers.get(timeout=WAIT_S)
        assert (answer.status, answer.payload) == (200, {"ok": True})
    finally:
        child.close()
    events = stored_events(hub, "obo-child")
    assert [e["body"] for e in events] == ["from the child"]
    assert events[0]["systemProperties"]["iothub-connection-device-id"] == "obo-child"
    assert "iothub-connection-module-id" not in events[0]["systemProperties"]


def test_edge_hub_is_refused_for_a_device_outside_its_scope(hub):
    rm = hub.registry_manager()
    edge_device(hub, "obo-edge-2", {})
    edge_device(hub, "obo-other-edge", {})
    child_of(rm, "obo-other-edge", "obo-strangers-child")
    rm.create_device_with_sas("obo-stranger", None, None, "enabled")
    password = edge_hub_token(hub, rm, "obo-edge-2")
    for device_id in ("obo-stranger", "obo-strangers-child"):
        rc = mqtt_connack(hub, paho, device_id, f"{hub.hostname}/{device_id}/?api-version=2021-04-12", password)
        assert rc == 5, (device_id, rc)
    # A token of another module of the Edge device does not act for its children.
    child_of(rm, "obo-edge-2", "obo-child-2")
    key = rm.create_module_with_sas("obo-edge-2", "filter", None, "", "").authentication.symmetric_key.primary_key
    filter_token = token(f"{hub.hostname}/devices/obo-edge-2/modules/filter", key, int(time.time()) + 3600)
    rc = mqtt_connack(hub, paho, "obo-child-2", f"{hub.hostname}/obo-child-2/?api-version=2021-04-12", filter_token)
    assert rc == 5, rc
    # The right token lets the in-scope child in.
    rc = mqtt_connack(hub, paho, "obo-child-2", f"{hub.hostname}/obo-child-2/?api-version=2021-04-12", password)
    assert rc == 0, rc
