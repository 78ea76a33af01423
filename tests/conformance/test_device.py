"""The device endpoint against real clients: the Python device SDK (`azure-iot-device`) over
MQTT and over WebSocket, `mosquitto_pub`/`mosquitto_sub`, and a byte-exact Tasmota emulation
(paho-mqtt, as Tasmota's `xdrv_02_9_mqtt.ino` sends it; `docs/protocol/hub-mqtt.md`)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import socket
import ssl
import subprocess
import threading
import time
import urllib.parse

import pytest
from azure.iot.device import IoTHubDeviceClient, Message, MethodResponse
from azure.iot.device.exceptions import CredentialError
from azure.iot.hub.models import CloudToDeviceMethod, Twin, TwinProperties
from msrest.exceptions import HttpOperationError

from conftest import closed_by_server, require_tool

IRONHUB_ADDRESS = "127.0.0.3"
WAIT_S = 10

# The Python device SDK over MQTT (8883) and over MQTT over WebSocket (443, `websockets=True`).
TRANSPORTS = pytest.mark.parametrize("websockets", [False, True], ids=["mqtt", "websocket"])


def device_key(rm, device_id: str, **kw) -> str:
    d = rm.create_device_with_sas(device_id, None, None, kw.get("status", "enabled"))
    return d.authentication.symmetric_key.primary_key


def device_client(hub, device_id: str, key: str, **kw) -> IoTHubDeviceClient:
    cs = f"HostName={hub.hostname};DeviceId={device_id};SharedAccessKey={key}"
    ca = open(hub.ca_file).read()
    return IoTHubDeviceClient.create_from_connection_string(cs, server_verification_cert=ca, **kw)


def sas(resource: str, key: str, ttl: int = 3600, encode=lambda s: urllib.parse.quote(s, safe="")) -> str:
    """A device SAS token as the SDKs make it (`encode` decides how `sr` is transmitted)."""
    sr = encode(resource)
    se = str(int(time.time()) + ttl)
    sig = base64.b64encode(
        hmac.new(base64.b64decode(key), f"{sr}\n{se}".encode(), hashlib.sha256).digest()
    ).decode()
    return f"SharedAccessSignature sr={sr}&sig={urllib.parse.quote(sig, safe='')}&se={se}"


def wait_for(predicate, timeout=WAIT_S, what="condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


@TRANSPORTS
def test_connect_send_twin_and_methods(hub, rm, websockets):
    device_id = f"py-{'ws' if websockets else 'mqtt'}"
    key = device_key(rm, device_id)
    client = device_client(hub, device_id, key, websockets=websockets)
    client.connect()
    try:
        assert rm.get_device(device_id).connection_state == "Connected"

        msg = Message('{"t":1}', message_id="m 1", content_type="application/json", content_encoding="utf-8")
        msg.custom_properties = {"b": "x/y z", "a": "1"}
        client.send_message(msg)  # returns once the hub PUBACKed it
        # Read back from the event log with every property the SDK put in the topic.
        [event] = stored_events(hub, device_id)
        assert event["body"] == {"t": 1}
        assert event["applicationProperties"] == {"a": "1", "b": "x/y z"}
        system = event["systemProperties"]
        assert system["message-id"] == "m 1"
        assert system["content-type"] == "application/json"
        assert system["content-encoding"] == "utf-8"
        assert system["iothub-connection-device-id"] == device_id

        twin = client.get_twin()
        assert twin["desired"]["$version"] >= 1 and "$version" in twin["reported"]
        client.patch_twin_reported_properties({"temp": 21, "nested": {"on": True}})
        reported = rm.get_twin(device_id).properties.reported
        assert reported["temp"] == 21 and reported["nested"] == {"on": True}

        patches = []
        client.on_twin_desired_properties_patch_received = patches.append
        time.sleep(0.5)  # the SDK subscribes in the background
        etag = rm.get_twin(device_id).etag
        rm.update_twin(device_id, Twin(properties=TwinProperties(desired={"fw": "2"})), etag)
        wait_for(lambda: patches, what="the desired patch")
        assert patches[0]["fw"] == "2" and isinstance(patches[0]["$version"], int)

        answer = {"mode": "reply"}

        def on_method(request):
            if answer["mode"] == "reply":
                client.send_method_response(
                    MethodResponse.create_from_method_request(request, 200, {"ok": True, "got": request.payload})
                )

        client.on_method_request_received = on_method
        time.sleep(0.5)
        result = rm.invoke_device_method(
            device_id, CloudToDeviceMethod(method_name="reboot", payload={"delay": 1}, response_timeout_in_seconds=10)
        )
        assert result.status == 200 and result.payload == {"ok": True, "got": {"delay": 1}}

        answer["mode"] = "silent"
        started = time.monotonic()
        with pytest.raises(HttpOperationError) as e:
            rm.invoke_device_method(
                device_id, CloudToDeviceMethod(method_name="hang", payload=None, response_timeout_in_seconds=5)
            )
        assert e.value.response.status_code == 504
        assert e.value.response.headers["iothub-errorcode"] == "GatewayTimeout"
        assert 4.5 < time.monotonic() - started < 15
    finally:
        client.shutdown()

    wait_for(lambda: rm.get_device(device_id).connection_state == "Disconnected", what="Disconnected")
    with pytest.raises(HttpOperationError) as e:
        rm.invoke_device_method(device_id, CloudToDeviceMethod(method_name="reboot", payload={}, response_timeout_in_seconds=5))
    assert e.value.response.status_code == 404
    assert e.value.response.headers["iothub-errorcode"] == "DeviceNotOnline"


def test_wrong_and_expired_credentials_are_refused(hub, rm):
    key = device_key(rm, "py-creds")
    wrong = device_client(hub, "py-creds", base64.b64encode(b"k" * 32).decode())
    with pytest.raises(CredentialError):
        wrong.connect()
    wrong.shutdown()

    # An expired token, sent with paho as the SDK would send it: CONNACK 5.
    paho = pytest.importorskip("paho.mqtt.client")
    token = sas(f"{hub.hostname}/devices/py-creds", key, ttl=-10)
    assert mqtt_connack(hub, paho, "py-creds", f"{hub.hostname}/py-creds/?api-version=2021-04-12", token) == 5
    token = sas(f"{hub.hostname}/devices/py-creds", key)
    assert mqtt_connack(hub, paho, "py-creds", f"{hub.hostname}/py-creds/?api-version=2021-04-12", token) == 0


def mqtt_connack(hub, paho, client_id, username, password, **tls) -> int:
    """Connects with paho and returns the CONNACK code."""
    result = {}
    done = threading.Event()
    c = paho.Client(client_id=client_id, clean_session=True, protocol=paho.MQTTv311)
    c.username_pw_set(username, password)
    c.tls_set(ca_certs=hub.ca_file, **tls)

    def on_connect(client, userdata, flags, rc):
        result["rc"] = rc
        done.set()

    c.on_connect = on_connect
    c.connect(hub.address, 8883, keepalive=30)
    c.loop_start()
    try:
        assert done.wait(WAIT_S), "no CONNACK"
    finally:
        c.loop_stop()
        c.disconnect()
    return result["rc"]


@TRANSPORTS
def test_x509_self_signed_device(hub, rm, tmp_path, websockets):
    require_tool("openssl")
    suffix = "ws" if websockets else "mqtt"
    device_id = f"py-x509-{suffix}"
    cert, key = tmp_path / "x1.pem", tmp_path / "x1.key"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
         "-keyout", str(key), "-out", str(cert), "-days", "2", "-subj", f"/CN={device_id}"],
        check=True, capture_output=True,
    )
    der = ssl.PEM_cert_to_DER_cert(cert.read_text())
    thumb = hashlib.sha1(der).hexdigest().upper()
    rm.create_device_with_x509(device_id, thumb, thumb, "enabled")

    from azure.iot.device import X509

    client = IoTHubDeviceClient.create_from_x509_certificate(
        X509(str(cert), str(key)), hostname=hub.hostname, device_id=device_id,
        server_verification_cert=open(hub.ca_file).read(), websockets=websockets,
    )
    client.connect()
    client.send_message(Message("from x509"))
    client.patch_twin_reported_properties({"cert": "ok"})
    client.shutdown()
    assert rm.get_twin(device_id).properties.reported["cert"] == "ok"
    [event] = stored_events(hub, device_id)
    assert event["body"] == "from x509"
    assert "x509" in event["systemProperties"]["iothub-connection-auth-method"].lower()

    rm.create_device_with_x509(f"{device_id}-other", "AB" * 20, "AB" * 20, "enabled")
    other = IoTHubDeviceClient.create_from_x509_certificate(
        X509(str(cert), str(key)), hostname=hub.hostname, device_id=f"{device_id}-other",
        server_verification_cert=open(hub.ca_file).read(), websockets=websockets,
    )
    with pytest.raises(CredentialError):
        other.connect()
    other.shutdown()


@TRANSPORTS
def test_reconnect_after_the_server_drops_the_connection(hub, rm, websockets):
    """PYDEV connects with clean session 0 and never re-subscribes: the session must survive a
    dropped connection, even a server restart."""
    device_id = f"py-reconnect-{'ws' if websockets else 'mqtt'}"
    key = device_key(rm, device_id)
    client = device_client(hub, device_id, key, websockets=websockets)
    client.connect()
    try:
        calls = []

        def on_method(request):
            calls.append(request.name)
            client.send_method_response(MethodResponse.create_from_method_request(request, 200, None))

        client.on_method_request_received = on_method
        time.sleep(0.5)
        hub.kill9()
        hub.restart()
        wait_for(lambda: rm.get_device(device_id).connection_state == "Connected", timeout=60, what="the SDK to reconnect")
        result = rm.invoke_device_method(
            device_id, CloudToDeviceMethod(method_name="after-restart", payload=None, response_timeout_in_seconds=10)
        )
        assert result.status == 200 and calls == ["after-restart"]
        # And it keeps sending: telemetry after the restart reaches the event log.
        client.send_message(Message("after the restart"))
        assert [e["body"] for e in stored_events(hub, device_id)] == ["after the restart"]
    finally:
        client.shutdown()


def test_mosquitto_as_a_plain_device(hub, rm):
    require_tool("mosquitto_pub")
    require_tool("mosquitto_sub")
    key = device_key(rm, "mosq1")
    token = sas(f"{hub.hostname}/devices/mosq1", key)
    base = ["-h", hub.address, "-p", "8883", "--cafile", hub.ca_file, "-V", "mqttv311", "-i", "mosq1",
            "-u", f"{hub.hostname}/mosq1/?api-version=2021-04-12", "-P", token]
    ok = subprocess.run(["mosquitto_pub", *base, "-t", "devices/mosq1/messages/events/", "-q", "1", "-m", "{}"],
                        capture_output=True, text=True, timeout=30)
    assert ok.returncode == 0, ok.stderr
    # QoS 2 closes the connection, as IoT Hub does.
    q2 = subprocess.run(["mosquitto_pub", *base, "-t", "devices/mosq1/messages/events/", "-q", "2", "-m", "x", "-d"],
                        capture_output=True, text=True, timeout=30)
    assert "PUBCOMP" not in q2.stdout + q2.stderr
    # Subscribing to C2D is granted; a foreign filter gets 0x80.
    sub = subprocess.run(["mosquitto_sub", *base, "-t", "devices/mosq1/messages/devicebound/#", "-t", "cmnd/#",
                          "-q", "1", "-d", "-W", "2"], capture_output=True, text=True, timeout=30)
    assert "received SUBACK" in sub.stdout + sub.stderr
    assert "Subscribed (mid: 1): 1, 128" in sub.stdout + sub.stderr
    wrong = subprocess.run(["mosquitto_pub", *base[:-1], sas(f"{hub.hostname}/devices/mosq1", base64.b64encode(b"x" * 32).decode()),
                            "-t", "devices/mosq1/messages/events/", "-m", "{}"], capture_output=True, text=True, timeout=30)
    assert wrong.returncode != 0 and "not authorised" in wrong.stderr.lower()


def tasmota_sas(host: str, device_id: str, key: str) -> str:
    """`AzurePSKtoToken`: `sr` with only `+ = /` encoded, fields sr, sig, se, TTL one day."""
    enc = lambda s: s.replace("+", "%2B").replace("=", "%3D").replace("/", "%2F")
    sr = enc(f"{host}/devices/{device_id}")
    se = str(int(time.time()) + 86400)
    sig = base64.b64encode(hmac.new(base64.b64decode(key), f"{sr}\n{se}".encode(), hashlib.sha256).digest()).decode()
    return f"SharedAccessSignature sr={sr}&sig={enc(sig)}&se={se}"


def test_tasmota_emulation(hub, rm):
    paho = pytest.importorskip("paho.mqtt.client")
    device_id = "AABBCCDDEEFF"
    key = device_key(rm, device_id)
    events = []
    connected = threading.Event()
    c = paho.Client(client_id=device_id, clean_session=True, protocol=paho.MQTTv311)
    # Tasmota's username has no api-version (the `;` bug), and its Will is its LWT topic.
    c.username_pw_set(f"{hub.hostname}/{device_id}", tasmota_sas(hub.hostname, device_id, key))
    c.will_set(f"tele/{device_id}/LWT", "Offline", qos=1, retain=True)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.maximum_version = ssl.TLSVersion.TLSv1_2  # BearSSL: TLS 1.2 only
    ctx.set_ciphers("ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256")
    ctx.load_verify_locations(hub.ca_file)
    c.tls_set_context(ctx)
    c.on_connect = lambda *a: (events.append(("connack", a[3])), connected.set())
    c.on_subscribe = lambda client, userdata, mid, granted: events.append(("suback", granted))
    c.on_unsubscribe = lambda client, userdata, mid: events.append(("unsuback",))
    c.on_message = lambda client, userdata, m: events.append(("message", m.topic, m.payload))
    c.connect(hub.address, 8883, keepalive=30)
    c.loop_start()
    try:
        assert connected.wait(WAIT_S) and ("connack", 0) in events
        # Subscribed once per Tasmota topic, at QoS 0; then its native topics unsubscribed.
        c.subscribe(f"devices/{device_id}/messages/devicebound/#", 0)
        c.subscribe(f"devices/{device_id}/messages/devicebound/#", 0)
        c.unsubscribe(f"cmnd/{device_id}/#")
        wait_for(lambda: sum(1 for e in events if e[0] in ("suback", "unsuback")) == 3, what="SUBACKs and UNSUBACK")
        assert [e for e in events if e[0] == "suback"] == [("suback", (0,)), ("suback", (0,))]
        # QoS 0 retained telemetry with `topic=` in the property bag.
        info = c.publish(f"devices/{device_id}/messages/events/topic=tele%2F{device_id}%2FSTATE", '{"POWER":"ON"}', qos=0, retain=True)
        info.wait_for_publish(WAIT_S)
        # A reported-properties patch with $rid=1, answered with 204.
        c.subscribe("$iothub/twin/res/#", 0)
        c.publish("$iothub/twin/PATCH/properties/reported/?$rid=1", '{"Tasmota":"14.0"}', qos=0)
        wait_for(lambda: any(e[0] == "message" and e[1].startswith("$iothub/twin/res/204/?$rid=1") for e in events),
                 what="the twin response")
        assert c.is_connected(), "no disconnect along the way"
        # Power lost: the TCP connection ends without DISCONNECT, so the Will is due. Its topic
        # is not a telemetry topic, and IoT Hub ignores such a Will (docs/protocol/hub-mqtt.md,
        # "Will").
        c.loop_stop()
        c.socket().close()
    finally:
        c.loop_stop()
    assert rm.get_twin(device_id).properties.reported["Tasmota"] == "14.0"
    wait_for(lambda: rm.get_device(device_id).connection_state == "Disconnected", what="Disconnected after the drop")

    # The event log holds the retained STATE message, with its `topic` and the retain marker
    # IoT Hub adds: `mqtt-retain` (Microsoft's iot-hub-mqtt-support page; it once said
    # `x-opt-retain`, and was corrected to what the service sends), and nothing from the Will.
    time.sleep(0.5)
    [state] = stored_events(hub, device_id)
    assert state["body"] in ('{"POWER":"ON"}', {"POWER": "ON"}), state
    assert state["applicationProperties"] == {"topic": f"tele/{device_id}/STATE", "mqtt-retain": "true"}
    assert "x-opt-retain" not in state["systemProperties"]

    # The control: the same drop with a Will on the device's telemetry topic does send it, so
    # the Will above was due and ignored, not lost to a clean close.
    control_id = "AABBCCDDEE00"
    control_key = device_key(rm, control_id)
    k = paho.Client(client_id=control_id, clean_session=True, protocol=paho.MQTTv311)
    k.username_pw_set(f"{hub.hostname}/{control_id}", tasmota_sas(hub.hostname, control_id, control_key))
    k.will_set(f"devices/{control_id}/messages/events/", "Offline", qos=1, retain=True)
    k.tls_set_context(ctx)
    up = threading.Event()
    k.on_connect = lambda *a: up.set()
    k.connect(hub.address, 8883, keepalive=30)
    k.loop_start()
    try:
        assert up.wait(WAIT_S)
    finally:
        k.loop_stop()
    k.socket().close()
    wait_for(lambda: stored_events(hub, control_id), what="the control's Will")
    [will] = stored_events(hub, control_id)
    assert will["body"] == "Offline" and will["applicationProperties"]["mqtt-retain"] == "true"


def raw_tls(hub) -> ssl.SSLSocket:
    ctx = ssl.create_default_context(cafile=hub.ca_file)
    sock = socket.create_connection((hub.address, 8883), timeout=WAIT_S)
    return ctx.wrap_socket(sock, server_hostname=hub.hostname)


def closed(sock: ssl.SSLSocket) -> bool:
    try:
        return sock.recv(1024) == b""
    except (ConnectionError, ssl.SSLError, OSError):
        return True


def test_bad_input_is_refused(hub, rm):
    paho = pytest.importorskip("paho.mqtt.client")
    key = device_key(rm, "bad1")
    device_key(rm, "bad2")

    # Garbage instead of CONNECT: the connection is closed.
    s = raw_tls(hub)
    s.sendall(b"\xff\xff\xff\xff\xffnot mqtt")
    assert closed(s)

    def connected_client(client_id, k):
        c = paho.Client(client_id=client_id, clean_session=True, protocol=paho.MQTTv311)
        c.username_pw_set(f"{hub.hostname}/{client_id}/?api-version=2021-04-12", sas(f"{hub.hostname}/devices/{client_id}", k))
        c.tls_set(ca_certs=hub.ca_file)
        state = {"rc": None, "disconnected": threading.Event()}
        c.on_connect = lambda *a: state.update(rc=a[3])
        c.on_disconnect = lambda *a: state["disconnected"].set()
        c.connect(hub.address, 8883, keepalive=30)
        c.loop_start()
        wait_for(lambda: state["rc"] == 0, what="CONNACK 0")
        return c, state

    # Publishing on another device's topic closes the connection (after one valid message,
    # the control for the check below).
    c, state = connected_client("bad1", key)
    c.publish("devices/bad1/messages/events/", "valid", qos=1).wait_for_publish(WAIT_S)
    c.publish("devices/bad2/messages/events/", "spoofed", qos=1)
    assert state["disconnected"].wait(WAIT_S), "publishing as another device was not refused"
    c.loop_stop()

    # A message over 256 KB closes the connection.
    c, state = connected_client("bad1", key)
    c.publish("devices/bad1/messages/events/", b"x" * (256 * 1024 + 1), qos=1)
    assert state["disconnected"].wait(WAIT_S), "an oversized message was not refused"
    c.loop_stop()

    # And nothing refused was stored: the event stream has bad1's valid message only.
    assert [e["body"] for e in stored_events(hub, "bad1")] == ["valid"]
    assert stored_events(hub, "bad2") == []


def stored_events(hub, device_id: str) -> list:
    """Every event of a device in the event log, read through the REST event stream."""
    import json

    import requests

    parts = hub.connection_string_parts()
    auth = sas(hub.hostname, parts["SharedAccessKey"]) + f"&skn={parts['SharedAccessKeyName']}"
    with requests.get(
        f"https://{hub.address}/events/consumergroups/$Default/stream",
        params={"from": "start", "deviceId": device_id, "timeout": "1", "api-version": "2021-04-12"},
        headers={"Authorization": auth}, stream=True, timeout=30, verify=hub.ca_file,
    ) as response:
        assert response.status_code == 200, response.text
        return [json.loads(line) for line in response.iter_lines() if line]


def test_cli_twin_and_direct_method(hub, rm):
    """`ironhub hub device-twin …` and `ironhub hub invoke-device-method`, against a real device."""
    import json

    from conftest import run_cli

    key = device_key(rm, "cli-dev")
    client = device_client(hub, "cli-dev", key)
    client.connect()
    try:
        patches = []
        client.on_twin_desired_properties_patch_received = patches.append
        client.on_method_request_received = lambda r: client.send_method_response(
            MethodResponse.create_from_method_request(r, 201, {"echo": r.payload})
        )
        time.sleep(0.5)
        d = ["--data-dir", str(hub.data_dir)]
        out = run_cli("hub", "invoke-device-method", "-d", "cli-dev", "--mn", "reboot", "--mp", '{"a":1}', "--to", "10", *d, check=True)
        assert json.loads(out.stdout) == {"status": 201, "payload": {"echo": {"a": 1}}}

        out = run_cli("hub", "device-twin", "update", "-d", "cli-dev", "--desired", '{"fw":"3"}', "--tags", '{"site":"lab"}', *d, check=True)
        twin = json.loads(out.stdout)
        assert twin["properties"]["desired"]["fw"] == "3" and twin["tags"] == {"site": "lab"}
        wait_for(lambda: patches, what="the desired patch from the CLI")
        assert patches[0]["fw"] == "3"

        shown = json.loads(run_cli("hub", "device-twin", "show", "-d", "cli-dev", *d, check=True).stdout)
        assert shown["etag"] == twin["etag"]
        stale = run_cli("hub", "device-twin", "update", "-d", "cli-dev", "--tags", '{"x":1}', "--etag", "bogus", *d)
        assert stale.returncode != 0 and "PreconditionFailed" in stale.stderr

        replaced = json.loads(run_cli("hub", "device-twin", "replace", "-d", "cli-dev", "--json",
                                      '{"tags":{"only":true},"properties":{"desired":{}}}', *d, check=True).stdout)
        assert replaced["tags"] == {"only": True} and "fw" not in replaced["properties"]["desired"]
    finally:
        client.shutdown()
    offline = run_cli("hub", "invoke-device-method", "-d", "cli-dev", "--mn", "x", "--data-dir", str(hub.data_dir))
    assert offline.returncode != 0 and "DeviceNotOnline" in offline.stderr


# -- malformed packets after CONNECT ------------------------------------------------------------


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        byte, n = n % 128, n // 128
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _mqtt_str(b: bytes) -> bytes:
    return len(b).to_bytes(2, "big") + b


def _packet(byte1: int, body: bytes) -> bytes:
    return bytes([byte1]) + _varint(len(body)) + body


def _publish_qos1(topic: bytes, payload: bytes, pkid: int = 1, byte1: int = 0x32) -> bytes:
    return _packet(byte1, _mqtt_str(topic) + pkid.to_bytes(2, "big") + payload)


def _read_exactly(sock, n: int) -> bytes:
    data = b""
    while len(data) < n:
        chunk = sock.recv(n - len(data))
        if not chunk:
            raise AssertionError(f"connection closed after {data!r}, expected {n} bytes")
        data += chunk
    return data


def _connected_raw(hub, device_id: str, key: str) -> ssl.SSLSocket:
    """A TLS connection with a valid CONNECT (clean session, SAS) answered by CONNACK 0, and a
    PINGREQ answered: the connection works before the malformed packet arrives."""
    s = raw_tls(hub)
    username = f"{hub.hostname}/{device_id}/?api-version=2021-04-12".encode()
    password = sas(f"{hub.hostname}/devices/{device_id}", key).encode()
    variable = _mqtt_str(b"MQTT") + bytes([4, 0xC2]) + (30).to_bytes(2, "big")
    s.sendall(_packet(0x10, variable + _mqtt_str(device_id.encode()) + _mqtt_str(username) + _mqtt_str(password)))
    assert _read_exactly(s, 4) == b"\x20\x02\x00\x00", "no CONNACK 0"
    s.sendall(b"\xc0\x00")
    assert _read_exactly(s, 2) == b"\xd0\x00", "no PINGRESP"
    return s


MALFORMED_AFTER_CONNECT = {
    # A remaining length of five bytes (at most four are allowed).
    "remaining-length-too-long": b"\x32\xff\xff\xff\xff\x01" + _mqtt_str(b"devices/raw1/messages/events/") + b"\x00\x01long",
    # A remaining length shorter than the topic it announces.
    "remaining-length-short": b"\x32\x08" + _mqtt_str(b"devices/raw1/messages/events/") + b"\x00\x01short",
    # A topic that is not UTF-8.
    "topic-not-utf8": _publish_qos1(b"devices/raw1/messages/events/k=\xff\xfe", b"not-utf8"),
    # Wildcards in a PUBLISH topic name.
    "wildcard-hash": _publish_qos1(b"devices/raw1/messages/events/#", b"wild-hash"),
    "wildcard-plus": _publish_qos1(b"devices/raw1/messages/events/a=+", b"wild-plus"),
    # Reserved flag bits: PUBLISH with QoS 3, SUBSCRIBE without its 0b0010, PINGREQ with a bit set.
    "publish-qos3": _publish_qos1(b"devices/raw1/messages/events/", b"qos3", byte1=0x36),
    "subscribe-flags": _packet(0x80, (2).to_bytes(2, "big") + _mqtt_str(b"devices/raw1/messages/devicebound/#") + b"\x01"),
    "pingreq-flags": b"\xc1\x00",
}


def test_malformed_packets_after_connect_close_the_connection_and_store_nothing(hub, rm):
    key = device_key(rm, "raw1")
    # The control: the same hand-built packets, well formed, are accepted and stored.
    s = _connected_raw(hub, "raw1", key)
    s.sendall(_publish_qos1(b"devices/raw1/messages/events/k=%2B%23", b"valid"))
    assert _read_exactly(s, 4) == b"\x40\x02\x00\x01", "no PUBACK for the valid message"
    s.sendall(b"\xe0\x00")
    s.close()

    still_open = []
    for name, packet in MALFORMED_AFTER_CONNECT.items():
        s = _connected_raw(hub, "raw1", key)
        s.sendall(packet)
        if not closed_by_server(s):
            still_open.append(name)
        s.close()
    assert still_open == [], f"the server kept these connections open: {still_open}"

    wait_for(lambda: rm.get_device("raw1").connection_state == "Disconnected", what="Disconnected")
    events = stored_events(hub, "raw1")
    assert [e["body"] for e in events] == ["valid"], events
    assert events[0]["applicationProperties"] == {"k": "+#"}


def test_replace_twin_accepts_what_get_twin_returned(hub, rm, tmp_path):
    """`PUT /twins/{id}` takes the twin `GET` returned (reported properties, `$metadata`,
    `$version`, etag, version, status…), as IoT Hub does: with the service SDK's
    `replace_twin(id, get_twin(id))` and the CLI's `device-twin show` → `device-twin replace`."""
    import json

    from conftest import run_cli

    device_id = "twin-roundtrip"
    key = device_key(rm, device_id)
    client = device_client(hub, device_id, key)
    client.connect()
    try:
        client.patch_twin_reported_properties({"temp": 21})
    finally:
        client.shutdown()
    rm.update_twin(device_id, Twin(tags={"site": "a"}, properties=TwinProperties(desired={"fw": "1", "mode": "eco"})), "*")

    # The SDK's own round trip, unchanged, then changed.
    before = rm.get_twin(device_id)
    assert "$metadata" in before.properties.desired and "$version" in before.properties.reported
    same = rm.replace_twin(device_id, before)
    assert same.tags == {"site": "a"}
    assert {k: v for k, v in same.properties.desired.items() if not k.startswith("$")} == {"fw": "1", "mode": "eco"}
    assert same.properties.reported["temp"] == 21, "replace must not touch reported properties"
    twin = rm.get_twin(device_id)
    twin.tags = {"site": "b"}
    twin.properties.desired["fw"] = "2"
    del twin.properties.desired["mode"]
    replaced = rm.replace_twin(device_id, twin, twin.etag)
    assert replaced.tags == {"site": "b"}
    desired = replaced.properties.desired
    assert desired["fw"] == "2" and "mode" not in desired
    assert desired["$version"] > before.properties.desired["$version"]
    assert replaced.properties.reported["temp"] == 21
    assert replaced.properties.reported["$version"] == before.properties.reported["$version"]

    # The CLI: what `show` printed goes back through `replace` as a file, and inline.
    d = ["--data-dir", str(hub.data_dir)]
    shown = run_cli("hub", "device-twin", "show", "-d", device_id, *d, check=True).stdout
    path = tmp_path / "twin.json"
    path.write_text(shown)
    out = json.loads(run_cli("hub", "device-twin", "replace", "-d", device_id, "--json", str(path), *d, check=True).stdout)
    assert out["tags"] == {"site": "b"} and out["properties"]["desired"]["fw"] == "2"
    assert out["properties"]["reported"]["temp"] == 21
    edited = json.loads(shown)
    edited["properties"]["desired"]["fw"] = "3"
    out = json.loads(run_cli("hub", "device-twin", "replace", "-d", device_id, "-j", json.dumps(edited), *d, check=True).stdout)
    assert out["properties"]["desired"]["fw"] == "3"
    assert rm.get_twin(device_id).properties.desired["fw"] == "3"
