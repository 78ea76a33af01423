"""Module input messages wait for modules that are not connected, as IoT Edge's hub stores and
forwards them (Azure docs, "Deploy modules and establish routes in IoT Edge", and the
`$edgeHub` desired property `storeAndForwardConfiguration.timeToLiveSecs`): a module's
output routed to another module's input is kept until that module connects and acknowledges
it (a PUBACK over MQTT, an accept over AMQP), in order, across a `kill -9` of the server.

The sender is the Python `IoTHubModuleClient` (`send_message_to_output`); the receivers are the
Python `IoTHubModuleClient` over MQTT (`on_message_received`, `message.input_name`) and the Node
`ModuleClient` over AMQP (`inputMessage` events).
"""

from __future__ import annotations

import queue

from azure.iot.device import IoTHubModuleClient, Message

from conftest import test_address
from test_amqp_device import NodeDevice
from test_amqp_module_inputs import edge_device
from test_amqp_modules import sas_module

IRONHUB_ADDRESS = test_address("127.0.0.47")
WAIT_S = 20

ROUTES = {
    "toSink": 'FROM /messages/modules/filter/outputs/out1 INTO BrokeredEndpoint("/modules/sink/inputs/in1")',
    "upstream": "FROM /messages/* INTO $upstream",
}


def module_client(hub, connection_string: str) -> IoTHubModuleClient:
    client = IoTHubModuleClient.create_from_connection_string(
        connection_string, server_verification_cert=open(hub.ca_file).read())
    client.connect()
    return client


def send_outputs(hub, connection_string: str, texts: list[str]) -> None:
    """Sends each text to output `out1` (each acknowledged) and disconnects."""
    sender = module_client(hub, connection_string)
    try:
        for text in texts:
            message = Message(text)
            message.message_id = f"id-{text}"
            message.custom_properties["n"] = text
            sender.send_message_to_output(message, "out1")
    finally:
        sender.shutdown()


def edge_modules(hub, device_id: str) -> tuple[str, str]:
    """An Edge device with modules `filter` and `sink`: their connection strings."""
    edge_device(hub, device_id, ROUTES)
    rm = hub.registry_manager()
    _, filter_cs = sas_module(hub, rm, device_id, "filter")
    _, sink_cs = sas_module(hub, rm, device_id, "sink")
    return filter_cs, sink_cs


def receiving_module(hub, connection_string: str) -> tuple[IoTHubModuleClient, queue.Queue]:
    """A module client with its input handler set before it connects, and what it receives: its
    persistent session's waiting inputs may come right after the CONNACK, and the SDK drops (and
    acknowledges) an input that arrives before the handler is set."""
    client = IoTHubModuleClient.create_from_connection_string(
        connection_string, server_verification_cert=open(hub.ca_file).read())
    received: queue.Queue = queue.Queue()
    client.on_message_received = received.put
    client.connect()
    return client, received


def receive(received: queue.Queue, n: int) -> list:
    return [received.get(timeout=WAIT_S) for _ in range(n)]


def test_an_offline_module_gets_its_inputs_in_order_when_it_connects_over_mqtt(hub):
    filter_cs, sink_cs = edge_modules(hub, "edge-queue-mqtt")
    send_outputs(hub, filter_cs, ["a", "b", "c"])
    sink, inputs = receiving_module(hub, sink_cs)
    try:
        messages = receive(inputs, 3)
        assert [m.data for m in messages] == [b"a", b"b", b"c"]
        assert {m.input_name for m in messages} == {"in1"}
        assert [m.message_id for m in messages] == ["id-a", "id-b", "id-c"]
        assert [m.custom_properties["n"] for m in messages] == ["a", "b", "c"]
    finally:
        sink.shutdown()
    # What was acknowledged is gone: after reconnecting, the next input is a new message.
    send_outputs(hub, filter_cs, ["d"])
    sink, inputs = receiving_module(hub, sink_cs)
    try:
        assert [m.data for m in receive(inputs, 1)] == [b"d"]
    finally:
        sink.shutdown()


def test_waiting_inputs_survive_kill_9_and_reach_an_amqp_module(hub):
    filter_cs, sink_cs = edge_modules(hub, "edge-queue-amqp")
    send_outputs(hub, filter_cs, ["one", "two"])
    hub.kill9()
    hub.start()
    sink = NodeDevice(hub, "amqp", sink_cs)
    try:
        assert sink.opened["event"] == "open", sink.opened
        sink.run("inputs")
        got = [sink.event("input") for _ in range(2)]
        assert [(g["input"], g["data"], g["messageId"]) for g in got] == [
            ("in1", "one", "id-one"), ("in1", "two", "id-two")], got
        assert got[0]["properties"] == {"n": "one"}, got
        # A message sent while the module is connected comes next, live.
        send_outputs(hub, filter_cs, ["three"])
        assert sink.event("input")["data"] == "three"
    finally:
        sink.close()
    # Accepted messages left the queue: an MQTT connection now gets only the next one.
    send_outputs(hub, filter_cs, ["four"])
    sink, inputs = receiving_module(hub, sink_cs)
    try:
        assert [m.data for m in receive(inputs, 1)] == [b"four"]
    finally:
        sink.shutdown()
