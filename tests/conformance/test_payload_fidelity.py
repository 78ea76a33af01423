"""What a device sends is what every reader gets back, byte for byte.

Telemetry sent by the Python device SDK, by `mosquitto_pub` and over the HTTPS device API (binary, non-UTF-8, text,
whitespace-significant JSON and JSON with numbers no double holds, with and without a JSON
content type) is read back through every reader ironhub has:

- the REST event stream: `bodyBase64` is the exact bytes (what an Event Hubs/AMQP reader gets as
  the message's data); `body` is parsed only for a JSON content type, else the exact text;
- `ironhub hub monitor-events`: undeclared payloads as the original text, as az shows them
  (`{{non-decodable payload}}` for bytes that are not UTF-8, as az);
- the event log's stored bytes (`events.db`, read-only while the server runs).
"""

from __future__ import annotations

import base64
import json
import sqlite3
import subprocess

import requests
from azure.iot.device import IoTHubDeviceClient, Message

from conftest import require_tool, run_cli
from dps_helpers import stored_events

IRONHUB_ADDRESS = "127.0.0.60"

# name -> (body, content type)
PAYLOADS = {
    "binary": (bytes(range(256)), None),
    "latin-1": ("café naïve".encode("latin-1"), None),
    "utf-8 text": ("héllo ☃\r\n  two  spaces\t".encode(), None),
    "spaced json": (b'{"a":  1.50,\n  "b" : [1,2 ,3],\t"c": "\\u00e9"}\n', None),
    "big numbers": (b'{"id": 123456789012345678901234567890, "f": 1e400, "z": -0.0}', None),
    "declared json": (b'{"a":  1.50,\n  "b" : [1,2 ,3]}', "application/json"),
    "declared text": (b'{"looks": "like json"}', "text/plain"),
}


def device_key(rm, device_id: str) -> str:
    return rm.create_device_with_sas(device_id, None, None, "enabled").authentication.symmetric_key.primary_key


def send_with_sdk(hub, device_id: str, key: str) -> None:
    client = IoTHubDeviceClient.create_from_connection_string(
        f"HostName={hub.hostname};DeviceId={device_id};SharedAccessKey={key}",
        server_verification_cert=open(hub.ca_file).read(),
    )
    client.connect()
    try:
        for name, (body, content_type) in PAYLOADS.items():
            msg = Message(body, message_id=name)
            if content_type:
                msg.content_type = content_type
            client.send_message(msg)  # returns once the hub PUBACKed it
    finally:
        client.shutdown()


def send_with_mosquitto(hub, device_id: str, tmp_path) -> None:
    sas = run_cli("hub", "generate-sas-token", "-d", device_id, "--data-dir", str(hub.data_dir), check=True)
    token = json.loads(sas.stdout)["sas"]
    for i, (name, (body, content_type)) in enumerate(PAYLOADS.items()):
        path = tmp_path / f"payload-{i}"
        path.write_bytes(body)
        props = "$.mid=" + name.replace(" ", "%20")
        if content_type:
            props += "&$.ct=" + content_type.replace("/", "%2F")
        done = subprocess.run(
            ["mosquitto_pub", "-h", hub.address, "-p", "8883", "--cafile", hub.ca_file, "-V", "mqttv311",
             "-i", device_id, "-u", f"{hub.hostname}/{device_id}/?api-version=2021-04-12", "-P", token,
             "-t", f"devices/{device_id}/messages/events/{props}", "-q", "1", "-f", str(path)],
            capture_output=True, text=True, timeout=30)
        assert done.returncode == 0, done.stderr


def send_with_https(hub, device_id: str) -> None:
    """IoT Hub's HTTPS device API (`POST /devices/{id}/messages/events`), the body as is."""
    sas = run_cli("hub", "generate-sas-token", "-d", device_id, "--data-dir", str(hub.data_dir), check=True)
    token = json.loads(sas.stdout)["sas"]
    for name, (body, content_type) in PAYLOADS.items():
        headers = {"Authorization": token, "iothub-messageid": name}
        if content_type:
            headers["Content-Type"] = content_type
        r = requests.post(f"https://{hub.address}/devices/{device_id}/messages/events",
                          params={"api-version": "2020-03-13"}, data=body, headers=headers,
                          timeout=30, verify=hub.ca_file)
        assert r.status_code == 204, r.text


def check_stream(hub, device_id: str) -> None:
    events = stored_events(hub, device_id)
    assert [e["systemProperties"]["message-id"] for e in events] == list(PAYLOADS)
    for event in events:
        name = event["systemProperties"]["message-id"]
        body, content_type = PAYLOADS[name]
        assert base64.b64decode(event["bodyBase64"]) == body, name
        if content_type == "application/json":
            assert event["body"] == json.loads(body), name
        elif _utf8(body) is not None:
            assert event["body"] == body.decode(), name
            assert "bodyEncoding" not in event, name
        else:
            assert event["bodyEncoding"] == "base64" and base64.b64decode(event["body"]) == body, name


def check_monitor(hub, device_id: str) -> None:
    out = run_cli("hub", "monitor-events", "-d", device_id, "--et", "0", "--to", "2", "--props", "sys",
                  "--data-dir", str(hub.data_dir), check=True)
    decoder = json.JSONDecoder()
    events, text = [], out.stdout.strip()
    while text:
        event, end = decoder.raw_decode(text)
        events.append(event["event"])
        text = text[end:].lstrip()
    assert [e["properties"]["system"]["message_id"] for e in events] == list(PAYLOADS)
    for event in events:
        name = event["properties"]["system"]["message_id"]
        body, content_type = PAYLOADS[name]
        if content_type == "application/json":
            assert event["payload"] == json.loads(body), name
        elif _utf8(body) is not None:
            assert event["payload"] == body.decode(), name
        else:
            assert event["payload"] == "{{non-decodable payload}}", name
    assert "Stopping event monitor: no event for 2 s" in out.stderr


def check_stored(hub, device_id: str) -> None:
    db = sqlite3.connect(f"file:{hub.data_dir / 'events.db'}?mode=ro", uri=True)
    try:
        rows = db.execute("SELECT body FROM events ORDER BY enqueued_ms, seq").fetchall()
    finally:
        db.close()
    stored = [bytes(r[0]) for r in rows]
    for name, (body, _) in PAYLOADS.items():
        assert body in stored, name


def _utf8(body: bytes):
    try:
        return body.decode()
    except UnicodeDecodeError:
        return None


def test_sdk_telemetry_reads_back_byte_for_byte(hub, rm):
    key = device_key(rm, "fid-sdk")
    send_with_sdk(hub, "fid-sdk", key)
    check_stream(hub, "fid-sdk")
    check_monitor(hub, "fid-sdk")
    check_stored(hub, "fid-sdk")


def test_mosquitto_telemetry_reads_back_byte_for_byte(hub, rm, tmp_path):
    require_tool("mosquitto_pub")
    device_key(rm, "fid-mosq")
    send_with_mosquitto(hub, "fid-mosq", tmp_path)
    check_stream(hub, "fid-mosq")
    check_monitor(hub, "fid-mosq")
    check_stored(hub, "fid-mosq")


def test_https_telemetry_reads_back_byte_for_byte(hub, rm):
    device_key(rm, "fid-https")
    send_with_https(hub, "fid-https")
    check_stream(hub, "fid-https")
    check_monitor(hub, "fid-https")
    check_stored(hub, "fid-https")
