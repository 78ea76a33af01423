"""The opt-in plain AMQP listener (`--amqp-plain-listen`) for the Event Hubs SDKs' development
emulator mode: with `UseDevelopmentEmulator=true` in the connection string, `azure-eventhub`
(5.15) and `@azure/event-hubs` (5.12, `@azure/core-amqp`) connect with plain AMQP to port 5672
of the endpoint instead of TLS on 5671. Both read the hub's telemetry through it with an
unmodified connection string of that form; the listener still wants a valid token, and the
server refuses to bind it beyond loopback unless told to.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
from pathlib import Path

import pytest
from azure.eventhub import EventHubConsumerClient
from azure.eventhub.exceptions import AuthenticationError, EventHubError
from azure.iot.device import IoTHubDeviceClient, Message

from conftest import ironhub_bin, test_address
from eventhub_helpers import receive_events

IRONHUB_ADDRESS = test_address("127.0.0.58")
WAIT_S = 20


def ironhub_args(_workdir) -> list[str]:
    return ["--amqp-plain-listen", f"{IRONHUB_ADDRESS}:5672"]


def emulator_connection_string(hub, key: str | None = None) -> str:
    """The hub's Event Hubs-compatible connection string as the emulator form: the same policy
    and entity, `sb://ADDRESS` and `UseDevelopmentEmulator=true`."""
    parts = dict(p.split("=", 1) for p in hub.info["eventHubCompatible"]["connectionString"].split(";") if p)
    return (f"Endpoint=sb://{hub.hostname};SharedAccessKeyName={parts['SharedAccessKeyName']};"
            f"SharedAccessKey={key or parts['SharedAccessKey']};EntityPath={parts['EntityPath']};"
            "UseDevelopmentEmulator=true")


def send_telemetry(hub, device_id: str, text: str) -> Message:
    rm = hub.registry_manager()
    key = rm.create_device_with_sas(device_id, None, None, "enabled").authentication.symmetric_key.primary_key
    client = IoTHubDeviceClient.create_from_connection_string(
        f"HostName={hub.hostname};DeviceId={device_id};SharedAccessKey={key}",
        server_verification_cert=open(hub.ca_file).read())
    message = Message(text, message_id=f"mid-{device_id}", content_type="application/json",
                      content_encoding="utf-8")
    message.custom_properties["colour"] = "amber"
    try:
        client.connect()
        client.send_message(message)
    finally:
        client.shutdown()
    return message


def test_python_event_hubs_sdk_reads_over_plain_amqp(hub):
    device_id = "plain-py"
    sent = send_telemetry(hub, device_id, '{"via": "plain"}')
    client = EventHubConsumerClient.from_connection_string(
        emulator_connection_string(hub), consumer_group="$Default", retry_total=0)
    assert client.get_eventhub_properties()["partition_ids"]
    mine = device_id.encode()
    events = receive_events(client, 1, starting_position="-1",
                            where=lambda e: e.system_properties.get(b"iothub-connection-device-id") == mine)
    (event,) = events
    assert event.body_as_json() == {"via": "plain"}
    assert event.properties == {b"colour": b"amber"}
    assert event.message_id == sent.message_id
    assert event.system_properties[b"iothub-message-source"] == b"Telemetry"


def test_node_event_hubs_sdk_reads_over_plain_amqp(hub):
    if shutil.which("node") is None:
        pytest.fail("`node` is not installed: run the suite through scripts/test", pytrace=False)
    device_id = "plain-node"
    send_telemetry(hub, device_id, '{"via": "node"}')
    partition = str(_partition_of(hub, device_id))
    with EventHubConsumerClient.from_connection_string(
            emulator_connection_string(hub), consumer_group="$Default", retry_total=0) as client:
        props = client.get_partition_properties(partition)
    node_dir = Path(__file__).resolve().parent / "node"
    # No NODE_EXTRA_CA_CERTS: there is no TLS to trust.
    env = dict(os.environ, IRONHUB_EVENTHUB_CONNECTION_STRING=emulator_connection_string(hub))
    env.pop("NODE_EXTRA_CA_CERTS", None)
    proc = subprocess.run(
        ["node", str(node_dir / "eventhubs.js"), "read", "--partition", partition,
         "--count", str(props["last_enqueued_sequence_number"] + 1)],
        cwd=node_dir, env=env, capture_output=True, text=True, timeout=90, stdin=subprocess.DEVNULL,
    )
    lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
    assert lines, f"eventhubs.js printed nothing (exit {proc.returncode})\n{proc.stderr}"
    out = json.loads(lines[-1])
    assert "error" not in out, f"{out}\n{proc.stderr}"
    (mine,) = [e for e in out["events"] if e["systemProperties"].get("iothub-connection-device-id") == device_id]
    assert mine["body"] == {"via": "node"}
    assert mine["properties"] == {"colour": "amber"}


def _partition_of(hub, device_id: str) -> int:
    """The partition the server put the device's events in, from its REST event stream."""
    from dps_helpers import stored_events

    return stored_events(hub, device_id)[0]["partition"]


def test_a_wrong_key_is_refused_on_the_plain_listener(hub):
    wrong = "eXl5eXl5eXl5eXl5eXl5eXl5eXl5eXl5eXl5eXl5eXk="
    client = EventHubConsumerClient.from_connection_string(
        emulator_connection_string(hub, key=wrong), consumer_group="$Default", retry_total=0)
    with client, pytest.raises((AuthenticationError, EventHubError)):
        client.get_eventhub_properties()


def test_tls_is_not_spoken_on_the_plain_listener(hub):
    """A TLS ClientHello is not an AMQP header: the connection is closed, nothing else."""
    from conftest import closed_by_server

    with socket.create_connection((hub.hostname, 5672), timeout=WAIT_S) as raw:
        raw.sendall(b"\x16\x03\x01\x00\x05hello")
        assert closed_by_server(raw, within=WAIT_S)


def test_the_plain_listener_stays_on_loopback_unless_told(tmp_path):
    proc = subprocess.run(
        [ironhub_bin(), "serve", "--data-dir", str(tmp_path / "data"),
         "--https-listen", f"{IRONHUB_ADDRESS}:0", "--mqtt-listen", f"{IRONHUB_ADDRESS}:0",
         "--amqp-listen", f"{IRONHUB_ADDRESS}:0", "--amqp-plain-listen", "0.0.0.0:0"],
        capture_output=True, text=True, timeout=30, stdin=subprocess.DEVNULL,
    )
    assert proc.returncode != 0
    assert "--amqp-plain-any-address" in proc.stderr, proc.stderr
    assert not (tmp_path / "data").exists() or not any((tmp_path / "data").iterdir())
