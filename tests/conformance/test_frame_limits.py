"""Configurable frame limits (issue 15): `serve --max-mqtt-packet-bytes`,
`--max-websocket-message-bytes` and `--max-amqp-message-bytes` set smaller than their defaults
refuse what is over them the way the default limits do (`test_abuse.py`: the connection is closed
from the packet's or frame's header), while the official SDKs keep working under them."""

from __future__ import annotations

import struct

import pytest
from azure.iot.device import IoTHubDeviceClient, Message

from conftest import closed_by_server
from test_abuse import mqtt_connect, tls, varint, websocket

IRONHUB_ADDRESS = "127.0.0.233"
MQTT_MAX = 2048
WEBSOCKET_MAX = 4096
AMQP_MAX = 4096
SLACK_S = 5.0


def ironhub_args(workdir) -> list[str]:
    config = workdir / "ironhub.toml"
    # The AMQP limit from the config file, the others from flags.
    config.write_text(f"[frame_limits]\namqp_message_bytes = {AMQP_MAX}\n")
    return [
        "--config",
        str(config),
        "--max-mqtt-packet-bytes",
        str(MQTT_MAX),
        "--max-websocket-message-bytes",
        str(WEBSOCKET_MAX),
    ]


def sdk_device(hub, rm, device_id: str, websockets: bool) -> IoTHubDeviceClient:
    key = rm.create_device_with_sas(device_id, None, None, "enabled").authentication.symmetric_key.primary_key
    cs = f"HostName={hub.hostname};DeviceId={device_id};SharedAccessKey={key}"
    client = IoTHubDeviceClient.create_from_connection_string(
        cs, server_verification_cert=open(hub.ca_file).read(), websockets=websockets
    )
    client.connect()
    return client


@pytest.mark.parametrize("websockets", [False, True], ids=["mqtt", "websocket"])
def test_the_device_sdk_sends_under_the_limits(hub, rm, websockets):
    client = sdk_device(hub, rm, f"small-{'ws' if websockets else 'tls'}", websockets)
    try:
        client.send_message(Message("x" * 1500))
    finally:
        client.shutdown()


def test_an_mqtt_packet_over_the_configured_limit_closes_the_connection(hub, rm):
    s = tls(hub, 8883)
    try:
        mqtt_connect(hub, rm, s, "over-mqtt")
        topic = b"devices/over-mqtt/messages/events/"
        # Exactly at the limit (counted after the fixed header): acknowledged.
        at = struct.pack(">H", len(topic)) + topic + struct.pack(">H", 1)
        at += b"x" * (MQTT_MAX - len(at))
        s.sendall(bytes([0x32]) + varint(len(at)) + at)
        assert s.recv(4) == b"\x40\x02\x00\x01", "the PUBACK of a packet at the limit"
        # One byte more, declared in the header: the connection is closed before the body.
        s.sendall(bytes([0x30]) + varint(MQTT_MAX + 1) + struct.pack(">H", len(topic)) + topic)
        assert closed_by_server(s, SLACK_S), "an MQTT packet over the limit closes the connection"
    finally:
        s.close()


def test_a_websocket_frame_over_the_configured_limit_closes_the_connection(hub):
    ws = websocket(hub)
    try:
        # FIN + binary, masked, 16-bit length one over the limit, the mask key, a few bytes.
        ws.sendall(bytes([0x82, 0x80 | 126]) + struct.pack(">H", WEBSOCKET_MAX + 1) + b"\x01\x02\x03\x04" + b"\x00" * 64)
        assert closed_by_server(ws, SLACK_S), "a WebSocket frame over the limit closes the connection"
    finally:
        ws.close()


def test_the_service_sdk_sends_over_amqp_under_a_smaller_amqp_limit(amqp_registry):
    # The limit is each link's max-message-size (fe2o3-amqp advertises it; it does not check
    # incoming transfers against it, and uamqp does not either, so a larger message is not
    # refused by it: IoT Hub's own size rules still apply in the domain).
    amqp_registry.create_device_with_sas("c2d-limit", None, None, "enabled")
    amqp_registry.send_c2d_message("c2d-limit", "x" * 1000)
