"""`ironhub device c2d-message send|receive-feedback|purge` (as `az iot device c2d-message`)
against a running ironhub, with real devices on the other end: the Python device SDK
(azure-iot-device, MQTT on 8883) and a Tasmota-style paho subscriber (QoS 0).

The server is conftest's `hub` fixture on loopback 127.0.0.9; the CLI logs in from its data
directory, as on the server's machine.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import ssl
import subprocess
import threading
import time
import uuid

import pytest

from conftest import ironhub_bin, run_cli

IRONHUB_ADDRESS = "127.0.0.9"
WAIT_S = 15


def cli(hub, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    return run_cli(*args, "--data-dir", str(hub.data_dir), check=check)


def cli_json(hub, *args: str):
    out = cli(hub, *args).stdout
    try:
        return json.loads(out)
    except json.JSONDecodeError as e:
        raise AssertionError(f"`ironhub {' '.join(args)}` printed invalid JSON ({e}):\n{out}")


def new_device(hub, prefix: str = "c2dcli") -> tuple[str, str]:
    """Creates a device with the CLI; returns its id and connection string."""
    device_id = f"{prefix}-{uuid.uuid4().hex[:8]}"
    cli_json(hub, "hub", "device-identity", "create", "-d", device_id)
    cs = cli_json(hub, "hub", "device-identity", "connection-string", "show", "-d", device_id)
    return device_id, cs["connectionString"]


def device_client(hub, connection_string: str):
    from azure.iot.device import IoTHubDeviceClient

    with open(hub.ca_file) as f:
        ca = f.read()
    return IoTHubDeviceClient.create_from_connection_string(
        connection_string, server_verification_cert=ca
    )


def feedback_for(hub, message_id: str, deadline_s: float = WAIT_S) -> list[dict]:
    """`receive-feedback` until a record for `message_id` shows up; returns those records."""
    deadline = time.time() + deadline_s
    mine: list[dict] = []
    while not mine and time.time() < deadline:
        records = cli_json(hub, "device", "c2d-message", "receive-feedback")
        assert isinstance(records, list), records
        mine = [r for r in records if r["originalMessageId"] == message_id]
        if not mine:
            time.sleep(0.3)
    return mine


def test_sdk_device_receives_the_cli_message_and_feedback_shows_success(hub):
    device_id, cs = new_device(hub)
    client = device_client(hub, cs)
    client.connect()
    try:
        proc = cli(
            hub, "device", "c2d-message", "send", "-d", device_id, "--data", "hello",
            "--props", "Topic=/power;k=v", "--mid", "m1", "--ack", "full",
        )
        assert proc.stdout == "", "az prints nothing when it does not wait"
        message = client.receive_message(timeout=WAIT_S)
        assert message is not None, "no C2D message arrived"
        assert message.data == b"hello"
        assert message.message_id == "m1"
        assert message.custom_properties == {"Topic": "/power", "k": "v"}
        assert message.content_encoding == "utf-8", "az's default content encoding"
        assert message.ack == "full"
    finally:
        client.shutdown()
    # The SDK PUBACKs on receipt, which completes the message: Success feedback.
    records = feedback_for(hub, "m1")
    assert [r["statusCode"] for r in records] == ["Success"], records
    assert records[0]["deviceId"] == device_id
    assert records[0]["description"] == "Success"
    # receive-feedback completed the batch: it is not shown again.
    again = cli_json(hub, "device", "c2d-message", "receive-feedback")
    assert not [r for r in again if r["originalMessageId"] == "m1"]


def test_send_wait_prints_the_feedback_once_the_device_completes(hub):
    device_id, cs = new_device(hub)
    mid = f"wait-{uuid.uuid4().hex[:6]}"
    send = subprocess.Popen(
        [ironhub_bin(), "device", "c2d-message", "send", "-d", device_id, "--mid", mid,
         "--ack", "positive", "--wait", "--yes", "--timeout", "60",
         "--data-dir", str(hub.data_dir)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        client = device_client(hub, cs)
        client.connect()
        try:
            message = client.receive_message(timeout=WAIT_S)
            assert message is not None and message.message_id == mid
            assert message.data == b"Ping from Az CLI IoT Extension", "az's default body"
        finally:
            client.shutdown()
        out, err = send.communicate(timeout=60)
    finally:
        if send.poll() is None:
            send.kill()
            send.wait()
    assert send.returncode == 0, err
    record = json.loads(out)
    assert record["originalMessageId"] == mid
    assert record["deviceId"] == device_id
    assert record["statusCode"] == "Success"


def test_send_wait_needs_an_ack(hub):
    device_id, _ = new_device(hub)
    proc = cli(hub, "device", "c2d-message", "send", "-d", device_id, "--wait", check=False)
    assert proc.returncode not in (0, 2), proc.stderr
    assert "ack must be" in proc.stderr


def tasmota_sas(host: str, device_id: str, key: str) -> str:
    """Tasmota's `AzurePSKtoToken`: `sr` with only `+ = /` encoded, valid for a day."""
    enc = lambda s: s.replace("+", "%2B").replace("=", "%3D").replace("/", "%2F")
    sr = enc(f"{host}/devices/{device_id}")
    se = str(int(time.time()) + 86400)
    sig = base64.b64encode(
        hmac.new(base64.b64decode(key), f"{sr}\n{se}".encode(), hashlib.sha256).digest()
    ).decode()
    return f"SharedAccessSignature sr={sr}&sig={enc(sig)}&se={se}"


def tasmota_client(hub, device_id: str, connection_string: str, paho):
    """A paho client connecting as Tasmota does (TLS 1.2, SAS, clean session)."""
    key = dict(p.split("=", 1) for p in connection_string.split(";"))["SharedAccessKey"]
    c = paho.Client(client_id=device_id, clean_session=True, protocol=paho.MQTTv311)
    c.username_pw_set(f"{hub.hostname}/{device_id}", tasmota_sas(hub.hostname, device_id, key))
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.maximum_version = ssl.TLSVersion.TLSv1_2
    ctx.load_verify_locations(hub.ca_file)
    c.tls_set_context(ctx)
    return c


def test_tasmota_gets_the_topic_property_last(hub):
    paho = pytest.importorskip("paho.mqtt.client")
    device_id, cs = new_device(hub, "tasmota")
    c = tasmota_client(hub, device_id, cs, paho)
    subscribed = threading.Event()
    messages = []
    arrived = threading.Event()
    c.on_connect = lambda client, *a: client.subscribe(
        f"devices/{device_id}/messages/devicebound/#", 0)
    c.on_subscribe = lambda *a: subscribed.set()

    def on_message(client, userdata, m):
        messages.append((m.topic, m.payload, m.qos))
        arrived.set()

    c.on_message = on_message
    c.connect(hub.address, 8883, keepalive=30)
    c.loop_start()
    try:
        assert subscribed.wait(WAIT_S), "no SUBACK"
        cli(hub, "device", "c2d-message", "send", "-d", device_id, "--data", "ON",
            "--props", "Topic=/power;k=v")
        assert arrived.wait(WAIT_S), "the Tasmota subscriber got nothing"
    finally:
        c.loop_stop()
        c.disconnect()
    topic, payload, qos = messages[0]
    assert payload == b"ON" and qos == 0
    assert topic.startswith(f"devices/{device_id}/messages/devicebound/%24.mid="), topic
    # Given first, sent last: Tasmota takes everything after TOPIC= (any case) as the topic.
    assert topic.endswith("&k=v&Topic=%2Fpower"), topic
    command = topic[topic.upper().index("TOPIC=") + 6:].replace("%2F", "/")
    assert command == "/power"


def test_purge_empties_the_queue(hub, rm):
    device_id, _ = new_device(hub)
    for i in range(3):
        cli(hub, "device", "c2d-message", "send", "-d", device_id, "--data", f"m{i}")
    assert rm.get_device(device_id).cloud_to_device_message_count == 3
    result = cli_json(hub, "device", "c2d-message", "purge", "-d", device_id)
    assert result == {"totalMessagesPurged": 3, "deviceId": device_id}
    assert rm.get_device(device_id).cloud_to_device_message_count == 0
    again = cli_json(hub, "device", "c2d-message", "purge", "-d", device_id)
    assert again == {"totalMessagesPurged": 0, "deviceId": device_id}


def test_send_to_an_unknown_device_fails_with_device_not_found(hub):
    proc = cli(hub, "device", "c2d-message", "send", "-d", "no-such-device", "--data", "x",
               check=False)
    assert proc.returncode not in (0, 2), proc.stderr
    assert "DeviceNotFound" in proc.stderr, proc.stderr
    purge = cli(hub, "device", "c2d-message", "purge", "-d", "no-such-device", check=False)
    assert purge.returncode not in (0, 2) and "DeviceNotFound" in purge.stderr, purge.stderr
