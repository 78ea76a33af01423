"""The Event Hubs-compatible built-in endpoint (AMQP over TLS on 5671), read by the real Event
Hubs SDK for Python (`azure-eventhub` 5.x, its own PyAMQP stack) with the connection string
`ironhub info --json` prints under `eventHubCompatible`. The telemetry is sent by the Python
device SDK over MQTT; what the reader gets is compared field by field with what was sent, as IoT
Hub delivers it (Azure docs, "Read device-to-cloud messages from the built-in endpoint"):
AMQP properties, application properties, the `iothub-*` system properties and Event Hubs'
`x-opt-*` annotations.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import shutil
import subprocess
import threading
import time
import urllib.parse
import uuid
from datetime import datetime, timedelta, timezone

import pytest
from azure.core.credentials import AzureSasCredential
from azure.eventhub import EventHubConsumerClient
from azure.eventhub.exceptions import AuthenticationError, EventHubError
from azure.iot.device import IoTHubDeviceClient, Message

from pathlib import Path

from conftest import run_cli
from eventhub_helpers import receive_events

IRONHUB_ADDRESS = "127.0.0.90"
WAIT_S = 20
PARTITIONS = 4  # the server's default


# -- helpers -----------------------------------------------------------------------------------


def partition_for(device_id: str, partitions: int = PARTITIONS) -> int:
    """The partition the server puts a device's events in (FNV-1a of the id, as the event log
    documents): used only to pick one device per partition."""
    h = 0xCBF29CE484222325
    for b in device_id.encode():
        h = ((h ^ b) * 0x100000001B3) & 0xFFFFFFFFFFFFFFFF
    return h % partitions


def one_device_per_partition(prefix: str) -> dict[int, str]:
    found: dict[int, str] = {}
    i = 0
    while len(found) < PARTITIONS:
        found.setdefault(partition_for(f"{prefix}-{i}"), f"{prefix}-{i}")
        i += 1
    return found


def eventhub(hub) -> dict:
    return hub.info["eventHubCompatible"]


def consumer(hub, group: str = "$Default", connection_string: str | None = None) -> EventHubConsumerClient:
    return EventHubConsumerClient.from_connection_string(
        connection_string or eventhub(hub)["connectionString"],
        consumer_group=group,
        connection_verify=hub.ca_file,
        retry_total=0,
    )


def receive(hub, partition: str, count: int, group: str = "$Default", **position) -> list:
    """The first `count` events a fresh reader of `partition` receives from `position`
    (`starting_position`, `starting_position_inclusive`), within WAIT_S."""
    return receive_events(consumer(hub, group), count, wait_s=WAIT_S, partition_id=partition, **position)


def device(hub, device_id: str) -> IoTHubDeviceClient:
    """A connected Python device SDK client (MQTT) for a new device."""
    rm = hub.registry_manager()
    key = rm.create_device_with_sas(device_id, None, None, "enabled").authentication.symmetric_key.primary_key
    cs = f"HostName={hub.hostname};DeviceId={device_id};SharedAccessKey={key}"
    client = IoTHubDeviceClient.create_from_connection_string(cs, server_verification_cert=open(hub.ca_file).read())
    client.connect()
    return client


def send(hub, device_id: str, messages: list[Message]) -> None:
    client = device(hub, device_id)
    try:
        for m in messages:
            client.send_message(m)
    finally:
        client.shutdown()


def message(text: str, **props: str) -> Message:
    m = Message(text, message_id=str(uuid.uuid4()), content_encoding="utf-8", content_type="application/json")
    m.correlation_id = f"corr-{text}"
    m.custom_properties.update(props)
    return m


def sas(resource: str, key: str, policy: str, expiry: int) -> str:
    sr = urllib.parse.quote(resource, safe="")
    sig = base64.b64encode(hmac.new(base64.b64decode(key), f"{sr}\n{expiry}".encode(), hashlib.sha256).digest())
    return f"SharedAccessSignature sr={sr}&sig={urllib.parse.quote(sig.decode(), safe='')}&se={expiry}&skn={policy}"


# -- tests -------------------------------------------------------------------------------------


def test_info_names_the_endpoint(hub):
    eh = eventhub(hub)
    assert eh["endpoint"] == f"sb://{hub.hostname}/"
    assert eh["entityPath"]
    parts = dict(p.split("=", 1) for p in eh["connectionString"].split(";"))
    assert parts["Endpoint"] == eh["endpoint"]
    assert parts["SharedAccessKeyName"] == "service"
    assert base64.b64decode(parts["SharedAccessKey"])
    assert parts["EntityPath"] == eh["entityPath"]
    plain = run_cli("info", "--data-dir", str(hub.data_dir), check=True).stdout
    assert eh["connectionString"] in plain


def test_every_partition_delivers_what_the_device_sent(hub):
    devices = one_device_per_partition("ehdev")
    sent: dict[str, Message] = {}
    for partition, device_id in devices.items():
        m = message(f'{{"p": {partition}}}', colour="red", partition=str(partition))
        sent[device_id] = m
        send(hub, device_id, [m])

    client = consumer(hub)
    with client:
        props = client.get_eventhub_properties()
        assert props["eventhub_name"] == eventhub(hub)["entityPath"]
        assert props["partition_ids"] == [str(p) for p in range(PARTITIONS)]
        assert props["created_at"] <= datetime.now(timezone.utc)

    for partition, device_id in devices.items():
        (event,) = receive(hub, str(partition), 1, starting_position="-1")
        m = sent[device_id]
        assert event.body_as_str() == m.data
        assert event.properties == {b"colour": b"red", b"partition": str(partition).encode()}
        sysprops = event.system_properties
        assert sysprops[b"message-id"] == m.message_id.encode()
        assert sysprops[b"correlation-id"] == m.correlation_id.encode()
        assert sysprops[b"content-type"] == b"application/json"
        assert sysprops[b"content-encoding"] == b"utf-8"
        assert sysprops[b"iothub-connection-device-id"] == device_id.encode()
        assert sysprops[b"iothub-message-source"] == b"Telemetry"
        assert b'"type":"sas"' in sysprops[b"iothub-connection-auth-method"]
        assert sysprops[b"iothub-connection-auth-generation-id"]
        assert sysprops[b"iothub-enqueuedtime"] == sysprops[b"x-opt-enqueued-time"]
        assert event.sequence_number == 0
        assert event.offset == "0"
        assert event.partition_key == device_id.encode()
        assert abs(event.enqueued_time - datetime.now(timezone.utc)) < timedelta(minutes=1)

        with consumer(hub) as client:
            p = client.get_partition_properties(str(partition))
        assert p["id"] == str(partition)
        assert p["beginning_sequence_number"] == 0
        assert p["last_enqueued_sequence_number"] == 0
        assert p["last_enqueued_offset"] == "0"
        assert p["is_empty"] is False
        assert p["last_enqueued_time_utc"] == event.enqueued_time


def test_starting_positions(hub):
    device_id = "ehpos"
    partition = str(partition_for(device_id))
    send(hub, device_id, [message(str(i)) for i in range(3)])
    everything = receive(hub, partition, 3, starting_position="-1")
    bodies = [e.body_as_str() for e in everything if e.system_properties[b"iothub-connection-device-id"] == device_id.encode()]
    assert bodies == ["0", "1", "2"]
    mine = [e for e in everything if e.body_as_str() in bodies]
    first, second, third = mine[-3:]

    # A sequence number: exclusive by default, inclusive on request.
    after = receive(hub, partition, 1, starting_position=first.sequence_number)
    assert after[0].sequence_number == second.sequence_number
    at = receive(hub, partition, 1, starting_position=second.sequence_number, starting_position_inclusive=True)
    assert at[0].sequence_number == second.sequence_number
    # An offset (a string).
    by_offset = receive(hub, partition, 1, starting_position=second.offset)
    assert by_offset[0].sequence_number == third.sequence_number
    # An enqueued time: the first event enqueued at or after it.
    by_time = receive(hub, partition, 1, starting_position=third.enqueued_time, starting_position_inclusive=True)
    assert by_time[0].sequence_number == third.sequence_number

    # @latest: only what is sent after the reader attached. When the link is attached is not
    # observable through the SDK, so a late event is sent every two seconds until one arrives.
    client = consumer(hub)
    got: list = []
    arrived = threading.Event()

    def on_event(_ctx, event):
        if event is not None:
            got.append(event)
            arrived.set()

    t = threading.Thread(
        target=client.receive,
        kwargs=dict(on_event=on_event, partition_id=partition, starting_position="@latest"),
        daemon=True,
    )
    t.start()
    late_id = next(f"{device_id}-late-{i}" for i in range(1000) if str(partition_for(f"{device_id}-late-{i}")) == partition)
    late = device(hub, late_id)
    try:
        deadline = time.monotonic() + WAIT_S
        while not arrived.is_set() and time.monotonic() < deadline:
            late.send_message(message("late"))
            arrived.wait(2)
    finally:
        late.shutdown()
        client.close()
        t.join(WAIT_S)
    assert got, "no event arrived at the @latest reader"
    assert all(e.body_as_str() == "late" for e in got)
    assert got[0].sequence_number > third.sequence_number


def test_two_consumer_groups_read_independently(hub):
    run_cli("hub", "consumer-group", "create", "--name", "analytics", "--data-dir", str(hub.data_dir), check=True)
    device_id = "ehgroups"
    partition = str(partition_for(device_id))
    send(hub, device_id, [message("g1"), message("g2")])
    for group in ("$Default", "analytics"):
        events = receive(hub, partition, 2, group=group, starting_position="-1")
        bodies = [e.body_as_str() for e in events if e.system_properties[b"iothub-connection-device-id"] == device_id.encode()]
        assert bodies == ["g1", "g2"], group


def test_unknown_consumer_group_is_not_found(hub):
    client = consumer(hub, group="nosuchgroup")
    errors: list = []
    done = threading.Event()

    def on_error(_ctx, error):
        errors.append(error)
        done.set()

    t = threading.Thread(
        target=client.receive,
        kwargs=dict(on_event=lambda *_: None, on_error=on_error, partition_id="0", starting_position="-1"),
        daemon=True,
    )
    t.start()
    assert done.wait(WAIT_S), "no error for an unknown consumer group"
    client.close()
    t.join(WAIT_S)
    assert "amqp:not-found" in str(errors[0])


def test_unknown_entity_is_not_found(hub):
    eh = eventhub(hub)
    wrong = eh["connectionString"].replace(f"EntityPath={eh['entityPath']}", "EntityPath=nosuchhub")
    with consumer(hub, connection_string=wrong) as client:
        with pytest.raises(EventHubError) as e:
            client.get_eventhub_properties()
    assert "404" in str(e.value) or "not-found" in str(e.value)


def test_wrong_and_expired_tokens_get_401(hub):
    eh = eventhub(hub)
    parts = dict(p.split("=", 1) for p in eh["connectionString"].split(";"))
    wrong_key = base64.b64encode(b"x" * 32).decode()
    wrong = eh["connectionString"].replace(parts["SharedAccessKey"], wrong_key)
    with consumer(hub, connection_string=wrong) as client:
        with pytest.raises(AuthenticationError) as e:
            client.get_eventhub_properties()
    assert "Status code: 401" in str(e.value)

    audience = f"sb://{hub.hostname}/{eh['entityPath']}"
    expired = sas(audience, parts["SharedAccessKey"], "service", int(time.time()) - 60)
    client = EventHubConsumerClient(
        fully_qualified_namespace=hub.hostname,
        eventhub_name=eh["entityPath"],
        consumer_group="$Default",
        credential=AzureSasCredential(expired),
        connection_verify=hub.ca_file,
        retry_total=0,
    )
    with client:
        with pytest.raises(AuthenticationError) as e:
            client.get_eventhub_properties()
    assert "Status code: 401" in str(e.value)
    assert "expired" in str(e.value).lower()


def raw_attach_error(hub, address: str, audience: str):
    """The error a receiver link on `address` is closed with, attached with PyAMQP (the AMQP
    stack inside azure-eventhub) directly: the SDK's clients only ever attach where they expect
    a partition."""
    from azure.eventhub._pyamqp import ReceiveClient
    from azure.eventhub._pyamqp.authentication import SASTokenAuth
    from azure.eventhub._pyamqp.error import AMQPException, RetryPolicy

    parts = dict(p.split("=", 1) for p in eventhub(hub)["connectionString"].split(";"))
    auth = SASTokenAuth(audience, audience, "service", parts["SharedAccessKey"])
    client = ReceiveClient(
        hub.hostname,
        f"amqps://{hub.hostname}/{address}",
        auth=auth,
        connection_verify=hub.ca_file,
        retry_policy=RetryPolicy(retry_total=0),
    )
    try:
        client.open()
        with pytest.raises(AMQPException) as e:
            client.receive_message_batch(max_batch_size=1, timeout=WAIT_S)
        return e.value
    finally:
        client.close()


def test_unknown_addresses_are_not_found_and_messages_events_redirects(hub):
    entity = eventhub(hub)["entityPath"]
    audience = f"sb://{hub.hostname}/{entity}"
    for address in (f"{entity}/ConsumerGroups/$Default/Partitions/9", "nosuch/thing"):
        error = raw_attach_error(hub, address, audience)
        assert error.condition == b"amqp:not-found", (address, error)
    # IoT Hub's own name for the built-in endpoint redirects to the Event Hubs entity, as uamqp
    # era clients expect.
    error = raw_attach_error(hub, "messages/events", f"sb://{hub.hostname}")
    assert error.condition == b"amqp:link:redirect"
    assert error.info[b"hostname"] == hub.hostname.encode()
    assert error.info[b"port"] == 5671
    assert error.info[b"address"] == f"amqps://{hub.hostname}:5671/{entity}".encode()
    # The server is unaffected.
    with consumer(hub) as client:
        assert client.get_eventhub_properties()["partition_ids"]


def plain_receive(hub, user: str, password: str, address: str) -> list:
    """Messages a receiver on `address` gets within WAIT_S over a connection that logs in with
    SASL PLAIN (IoT Hub's `{policy}@sas.root.{hub}` with a SAS token as the password)."""
    from azure.eventhub._pyamqp import ReceiveClient
    from azure.eventhub._pyamqp.authentication import SASLPlainAuth
    from azure.eventhub._pyamqp.error import RetryPolicy

    client = ReceiveClient(
        hub.hostname,
        f"amqps://{hub.hostname}/{address}",
        auth=SASLPlainAuth(user, password),
        connection_verify=hub.ca_file,
        retry_policy=RetryPolicy(retry_total=0),
    )
    try:
        client.open()
        return client.receive_message_batch(max_batch_size=1, timeout=WAIT_S)
    finally:
        client.close()


def test_sasl_plain_with_a_policy_token(hub):
    device_id = "ehplain"
    send(hub, device_id, [message("plain")])
    entity = eventhub(hub)["entityPath"]
    address = f"{entity}/ConsumerGroups/$Default/Partitions/{partition_for(device_id)}"
    parts = dict(p.split("=", 1) for p in eventhub(hub)["connectionString"].split(";"))
    user = f"service@sas.root.{hub.hostname.split('.')[0]}"
    token = sas(hub.hostname, parts["SharedAccessKey"], "service", int(time.time()) + 600)
    (first,) = plain_receive(hub, user, token, address)
    # The partition's first event, with its Event Hubs position.
    assert first.message_annotations[b"x-opt-sequence-number"] == 0
    assert first.message_annotations[b"iothub-connection-device-id"]

    # A token that does not verify fails the SASL exchange (PyAMQP reports it as a ValueError).
    wrong = sas(hub.hostname, base64.b64encode(b"y" * 32).decode(), "service", int(time.time()) + 600)
    with pytest.raises(ValueError, match="SASL negotiation failed"):
        plain_receive(hub, user, wrong, address)


def test_node_event_hubs_sdk_reads_the_same_events(hub):
    """`@azure/event-hubs` (rhea, no SASL layer but a CBS token) reads what the device sent."""
    if shutil.which("node") is None:
        pytest.fail("`node` is not installed: run the suite through scripts/test", pytrace=False)
    device_id = "ehnode"
    partition = str(partition_for(device_id))
    sent = message('{"from": "python"}', colour="violet")
    send(hub, device_id, [sent])
    node_dir = Path(__file__).resolve().parent / "node"
    env = dict(
        os.environ,
        NODE_EXTRA_CA_CERTS=hub.ca_file,
        IRONHUB_EVENTHUB_CONNECTION_STRING=eventhub(hub)["connectionString"],
    )
    # Everything in the partition up to this device's event.
    with consumer(hub) as client:
        last = client.get_partition_properties(partition)["last_enqueued_sequence_number"]
    proc = subprocess.run(
        ["node", str(node_dir / "eventhubs.js"), "read", "--partition", partition, "--count", str(last + 1)],
        cwd=node_dir, env=env, capture_output=True, text=True, timeout=90, stdin=subprocess.DEVNULL,
    )
    lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
    assert lines, f"eventhubs.js printed nothing (exit {proc.returncode})\n{proc.stderr}"
    out = json.loads(lines[-1])
    assert "error" not in out, f"{out}\n{proc.stderr}"
    assert out["hub"] == {"name": eventhub(hub)["entityPath"], "partitionIds": [str(p) for p in range(PARTITIONS)]}
    assert out["partition"]["id"] == partition
    assert out["partition"]["lastEnqueuedSequenceNumber"] == last
    assert out["partition"]["isEmpty"] is False
    (mine,) = [e for e in out["events"] if e["systemProperties"].get("iothub-connection-device-id") == device_id]
    # The SDK hands a data body that parses as JSON over parsed.
    assert mine["body"] == {"from": "python"}
    assert mine["properties"] == {"colour": "violet"}
    system = mine["systemProperties"]
    assert system["messageId"] == sent.message_id
    assert system["correlationId"] == sent.correlation_id
    assert system["contentType"] == "application/json"
    assert system["contentEncoding"] == "utf-8"
    assert system["iothub-message-source"] == "Telemetry"
    assert mine["partitionKey"] == device_id
    assert mine["sequenceNumber"] == last


def test_malformed_input_closes_only_that_connection(hub):
    """Garbage instead of a protocol header, a header for an unknown protocol, and a SASL
    header followed by a frame that does not decode: each connection is closed, nothing else
    is affected."""
    import socket
    import ssl

    from conftest import closed_by_server

    ctx = ssl.create_default_context(cafile=hub.ca_file)
    ctx.check_hostname = False
    for payload in (
        b"GET / HTTP/1.1\r\n\r\n",
        b"AMQP\x09\x01\x00\x00",
        b"AMQP\x03\x01\x00\x00" + b"\x00\x00\x00\x10\x02\x01\x00\x00" + b"\xff" * 8,
        b"AMQP\x00\x01\x00\x00" + b"\x00\x00\x00\x0c\x02\x00\x00\x00" + b"\x00\x53\x10\xee",
    ):
        raw = socket.create_connection((hub.hostname, 5671), timeout=WAIT_S)
        with ctx.wrap_socket(raw, server_hostname=hub.hostname) as tls:
            tls.sendall(payload)
            assert closed_by_server(tls, within=WAIT_S), payload
    with consumer(hub) as client:
        assert client.get_eventhub_properties()["partition_ids"]


def test_amqp_over_websocket_on_443(hub):
    """The Event Hubs SDK's AMQP over WebSocket (`/$servicebus/websocket`, subprotocol
    AMQPWSB10, port 443) reads the same endpoint."""
    from azure.eventhub import TransportType

    client = EventHubConsumerClient.from_connection_string(
        eventhub(hub)["connectionString"],
        consumer_group="$Default",
        connection_verify=hub.ca_file,
        retry_total=0,
        transport_type=TransportType.AmqpOverWebsocket,
    )
    with client:
        props = client.get_eventhub_properties()
        assert props["partition_ids"] == [str(p) for p in range(PARTITIONS)]
        p = client.get_partition_properties("0")
        assert p["id"] == "0"
