"""Batched device-to-cloud telemetry over AMQP: one transfer with Microsoft's batch message
format (0x80013700) whose body is data sections, each an encoded AMQP message. The C and .NET
device SDKs batch this way (the C SDK's telemetry messenger, the .NET `SendEventBatchAsync`);
the Node device SDK's AMQP transport does not batch at all (its `sendEventBatch` throws
`NotImplementedError`), and the Python device SDK speaks only MQTT. So the batches here are built
by PyAMQP, the AMQP stack `azure-eventhub` vendors, with the very encoder `EventDataBatch` uses
(`BatchMessage` and `utils.add_batch`), and sent on a device's `…/messages/events` link over TLS
(5671) and over WebSocket (443). Each inner message becomes an event of its own, read back with
`azure-eventhub` with its properties; a malformed or oversized batch is rejected with an AMQP
error and stores nothing.
"""

from __future__ import annotations

import time

import pytest
from azure.eventhub import EventHubConsumerClient
from azure.eventhub._pyamqp import SendClient, utils
from azure.eventhub._pyamqp.authentication import AccessToken, JWTTokenAuth
from azure.eventhub._pyamqp.constants import TransportType
from azure.eventhub._pyamqp.error import MessageException
from azure.eventhub._pyamqp.message import BatchMessage, Message, Properties

from conftest import test_address
from dps_helpers import sas, stored_events
from eventhub_helpers import receive_events

IRONHUB_ADDRESS = test_address("127.0.0.57")

def device_key(hub, device_id: str) -> str:
    rm = hub.registry_manager()
    return rm.create_device_with_sas(device_id, None, None, "enabled").authentication.symmetric_key.primary_key


def sender(hub, device_id: str, transport: TransportType = TransportType.Amqp) -> SendClient:
    """A PyAMQP sender on a new device's telemetry link, authorized by a `$cbs` device token."""
    key = device_key(hub, device_id)
    audience = f"{hub.hostname}/devices/{device_id}"

    def token(*_args, **_kwargs):
        return AccessToken(sas(audience, key), int(time.time()) + 3600)

    auth = JWTTokenAuth(audience, audience, token, token_type=b"servicebus.windows.net:sastoken")
    # Over WebSocket, the device SDKs' path on 443.
    endpoint = ({"custom_endpoint_address": f"https://{hub.hostname}:443/$iothub/websocket"}
                if transport == TransportType.AmqpOverWebsocket else {})
    return SendClient(hub.hostname, f"amqps://{hub.hostname}/devices/{device_id}/messages/events",
                      auth=auth, connection_verify=hub.ca_file, transport_type=transport, **endpoint)


def batch_of(*messages: Message) -> BatchMessage:
    """A batched message holding `messages`, encoded as `EventDataBatch` encodes them."""
    batch = BatchMessage(data=[])
    for m in messages:
        utils.add_batch(batch, m)
    return batch


def inner(i: int, body: bytes | None = None) -> Message:
    return Message(
        data=[body if body is not None else f'{{"n": {i}}}'.encode()],
        properties=Properties(message_id=f"batch-{i}", correlation_id=f"corr-{i}",
                              content_type="application/json", content_encoding="utf-8"),
        application_properties={"index": str(i), "colour": "teal"},
    )


def send(client: SendClient, message) -> None:
    try:
        client.open()
        client.send_message(message)
    finally:
        client.close()


def read_events(hub, device_id: str, count: int) -> list:
    """The first `count` events of `device_id` in its partition, read by `azure-eventhub`."""
    partition = str(stored_events(hub, device_id)[0]["partition"])
    client = EventHubConsumerClient.from_connection_string(
        hub.info["eventHubCompatible"]["connectionString"], consumer_group="$Default",
        connection_verify=hub.ca_file, retry_total=0,
    )
    mine = device_id.encode()
    return receive_events(client, count, partition_id=partition, starting_position="-1",
                          where=lambda e: e.system_properties.get(b"iothub-connection-device-id") == mine)


@pytest.mark.parametrize("transport", [TransportType.Amqp, TransportType.AmqpOverWebsocket],
                         ids=["amqp", "amqp-ws"])
def test_each_message_of_a_batch_is_an_event_with_its_properties(hub, transport):
    device_id = f"batch-{transport.name.lower()}"
    send(sender(hub, device_id, transport), batch_of(*(inner(i) for i in range(3))))
    # The send returned once the server accepted the transfer: every message is stored.
    stored = stored_events(hub, device_id)
    assert [e["systemProperties"]["message-id"] for e in stored] == ["batch-0", "batch-1", "batch-2"]
    events = read_events(hub, device_id, 3)
    for i, event in enumerate(events):
        assert event.body_as_json() == {"n": i}
        assert event.properties == {b"index": b"%d" % i, b"colour": b"teal"}
        assert event.message_id == f"batch-{i}"
        assert event.correlation_id == f"corr-{i}"
        assert event.content_type == "application/json"
        system = event.system_properties
        assert system[b"iothub-connection-device-id"] == device_id.encode()
        assert system[b"iothub-message-source"] == b"Telemetry"
        assert system[b"content-encoding"] == b"utf-8"


def test_a_batch_and_single_messages_share_the_link(hub):
    device_id = "batch-mixed"
    client = sender(hub, device_id)
    try:
        client.open()
        client.send_message(inner(0))
        client.send_message(batch_of(inner(1), inner(2)))
        client.send_message(inner(3))
    finally:
        client.close()
    stored = stored_events(hub, device_id)
    assert [e["body"] for e in stored] == [{"n": i} for i in range(4)]
    assert [e["applicationProperties"]["index"] for e in stored] == ["0", "1", "2", "3"]


@pytest.mark.parametrize("case", ["garbage-section", "oversized", "empty"])
def test_a_bad_batch_is_rejected_and_stores_nothing(hub, case):
    device_id = f"batch-bad-{case}"
    client = sender(hub, device_id)
    if case == "garbage-section":
        batch = batch_of(inner(0))
        batch[5].append(b"\x00\x53\x75\xa0\x05hello-not-whole" + b"\xff" * 3)
        condition = "amqp:invalid-field"
    elif case == "oversized":
        # Each message is within IoT Hub's 256 KB; the batch is not.
        batch = batch_of(*(inner(i, b"x" * (100 * 1024)) for i in range(3)))
        condition = "amqp:link:message-size-exceeded"
    else:
        batch = BatchMessage(data=[])
        condition = "amqp:invalid-field"
    try:
        client.open()
        with pytest.raises(MessageException) as refused:
            client.send_message(batch)
        got = getattr(refused.value.condition, "value", refused.value.condition)
        assert (got.decode() if isinstance(got, bytes) else got) == condition, refused.value
        # The link is still good: a valid message after the refusal is stored, and only it.
        client.send_message(inner(9))
    finally:
        client.close()
    assert [e["systemProperties"]["message-id"] for e in stored_events(hub, device_id)] == ["batch-9"]
