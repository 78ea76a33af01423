"""Module inputs: a module's output messages reach other modules' inputs by the routes of its
device's `$edgeHub` twin, as IoT Edge's hub routes them (Azure docs, "Deploy modules and
establish routes in IoT Edge": `FROM /messages/modules/{m}/outputs/{o} [WHERE …] INTO
BrokeredEndpoint("/modules/{t}/inputs/{i}")`). The sender is the Node `ModuleClient` over AMQP
(`sendOutputEvent`, the output in `iothub-outputname`); the receivers are the Node
`ModuleClient` over AMQP (`inputMessage` events, the input in the `x-opt-input-name`
annotation) and the Python `IoTHubModuleClient` over MQTT (`devices/{d}/modules/{m}/inputs/…`).
"""

from __future__ import annotations

import queue

from azure.iot.device import IoTHubModuleClient
from azure.iot.hub.models import Twin, TwinProperties

from dps_helpers import stored_events
from test_amqp_device import TRANSPORTS, NodeDevice
from test_amqp_modules import sas_module

IRONHUB_ADDRESS = "127.0.0.66"
WAIT_S = 20


def edge_device(hub, device_id: str, routes: dict) -> None:
    """An IoT Edge device whose `$edgeHub` twin has `routes`."""
    rm = hub.registry_manager()
    rm.create_device_with_sas(device_id, None, None, "enabled", iot_edge=True)
    twin = rm.get_module_twin(device_id, "$edgeHub")
    rm.update_module_twin(device_id, "$edgeHub",
                          Twin(properties=TwinProperties(desired={"schemaVersion": "1.1", "routes": routes})),
                          twin.etag)


ROUTES = {
    "toInput": 'FROM /messages/modules/filter/outputs/out1 INTO BrokeredEndpoint("/modules/sink/inputs/in1")',
    "alerts": {"route": "FROM /messages/modules/filter/outputs/* WHERE level = 'critical' "
                        'INTO BrokeredEndpoint("/modules/sink/inputs/alerts")',
               "priority": 0, "timeToLiveSecs": 60},
    "upstream": "FROM /messages/* INTO $upstream",
}


@TRANSPORTS
def test_an_output_reaches_the_routed_inputs_over_amqp(hub, transport):
    device_id = f"edge-inputs-{transport}"
    edge_device(hub, device_id, ROUTES)
    rm = hub.registry_manager()
    _, filter_cs = sas_module(hub, rm, device_id, "filter")
    _, sink_cs = sas_module(hub, rm, device_id, "sink")
    sink = NodeDevice(hub, transport, sink_cs)
    source = NodeDevice(hub, transport, filter_cs)
    try:
        assert sink.opened["event"] == "open", sink.opened
        assert source.opened["event"] == "open", source.opened
        sink.run("inputs")
        # The twin's answer comes after the input link joined the module's session.
        sink.run("twin")

        source.run("output", output="out1", text="hello", messageId="m-1", properties={"level": "info"})
        got = sink.event("input")
        assert (got["input"], got["data"], got["messageId"]) == ("in1", "hello", "m-1"), got
        assert got["properties"] == {"level": "info"}, got

        # One message, two matching routes: one copy on each input.
        source.run("output", output="out1", text="alarm", properties={"level": "critical"})
        inputs = sorted(sink.event("input")["input"] for _ in range(2))
        assert inputs == ["alerts", "in1"]

        # An output no route names reaches no input (the next message is the next one seen).
        source.run("output", output="other", text="nobody")
        source.run("output", output="other", text="urgent", properties={"level": "critical"})
        got = sink.event("input")
        assert (got["input"], got["data"]) == ("alerts", "urgent"), got
    finally:
        source.close()
        sink.close()
    # Every output message was stored as telemetry too, with its output name.
    events = stored_events(hub, device_id)
    assert [e["body"] for e in events] == ["hello", "alarm", "nobody", "urgent"]
    assert [e["systemProperties"].get("iothub-outputname") for e in events] == ["out1", "out1", "other", "other"]


def test_an_amqp_module_s_output_reaches_an_mqtt_module_s_input(hub):
    device_id = "edge-inputs-mqtt"
    edge_device(hub, device_id, ROUTES)
    rm = hub.registry_manager()
    _, filter_cs = sas_module(hub, rm, device_id, "filter")
    _, sink_cs = sas_module(hub, rm, device_id, "sink")
    received: queue.Queue = queue.Queue()
    sink = IoTHubModuleClient.create_from_connection_string(sink_cs, server_verification_cert=open(hub.ca_file).read())
    sink.connect()
    # Set once connected, the handler returns when the inputs subscription is acknowledged.
    sink.on_message_received = received.put
    source = NodeDevice(hub, "amqp", filter_cs)
    try:
        assert source.opened["event"] == "open", source.opened
        source.run("output", output="out1", text="over mqtt", messageId="m-2", properties={"level": "info"})
        message = received.get(timeout=WAIT_S)
        assert message.input_name == "in1"
        assert message.data == b"over mqtt"
        assert message.message_id == "m-2"
        # The Python SDK leaves the sender's identity (`$.cdid`, `$.cmid`) among the custom ones.
        props = message.custom_properties
        assert props["level"] == "info"
        assert (props["$.cdid"], props["$.cmid"]) == (device_id, "filter"), props
    finally:
        source.close()
        sink.shutdown()
