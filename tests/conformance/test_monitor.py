"""`ironhub hub monitor-events`, `consumer-group` and `certificate` against a running server,
with real senders: the Python device SDK, mosquitto_pub and a Tasmota-style paho client; and the
event stream read directly over HTTPS with `requests`.

monitor-events prints what `az iot hub monitor-events` prints (azure-iot CLI extension,
`CommonParser.parse_message`): `{"event": {"origin", "module", "interface", "component",
["properties": {"system", "application"}], ["annotations"], "payload"}}`, where `system` holds
the AMQP message properties under uamqp's names (`message_id`, `content_type`, …) and
`annotations` the `iothub-*`/`x-opt-*` entries, times in Unix milliseconds.
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
import urllib.parse
from datetime import datetime, timezone

import pytest
import requests
from azure.iot.device import IoTHubDeviceClient, Message

from conftest import have_tool, ironhub_bin, require_tool, run_cli

IRONHUB_ADDRESS = "127.0.0.8"
WAIT_S = 15


# -- helpers -----------------------------------------------------------------------------------


def device_key(rm, device_id: str) -> str:
    d = rm.create_device_with_sas(device_id, None, None, "enabled")
    return d.authentication.symmetric_key.primary_key


def sdk_client(hub, device_id: str, key: str) -> IoTHubDeviceClient:
    cs = f"HostName={hub.hostname};DeviceId={device_id};SharedAccessKey={key}"
    return IoTHubDeviceClient.create_from_connection_string(cs, server_verification_cert=open(hub.ca_file).read())


def sas(resource: str, key: str, policy: str | None = None, ttl: int = 3600) -> str:
    sr = urllib.parse.quote(resource, safe="")
    se = str(int(time.time()) + ttl)
    sig = base64.b64encode(hmac.new(base64.b64decode(key), f"{sr}\n{se}".encode(), hashlib.sha256).digest()).decode()
    token = f"SharedAccessSignature sr={sr}&sig={urllib.parse.quote(sig, safe='')}&se={se}"
    return token + (f"&skn={policy}" if policy else "")


def now_ms() -> int:
    return int(time.time() * 1000)


def read_stream(hub, device_id: str, since: str) -> list:
    """The device's events since `since`, read over HTTPS from the NDJSON event stream."""
    parts = hub.connection_string_parts()
    auth = sas(hub.hostname, parts["SharedAccessKey"], parts["SharedAccessKeyName"])
    with requests.get(
        f"https://{hub.address}/events/consumergroups/$Default/stream",
        params={"from": f"time:{since}", "deviceId": device_id, "timeout": "2", "api-version": "2021-04-12"},
        headers={"Authorization": auth}, stream=True, timeout=30,
    ) as response:
        assert response.status_code == 200, response.text
        assert response.headers["content-type"].startswith("application/x-ndjson")
        return [json.loads(line) for line in response.iter_lines() if line]


def json_stream(text: str) -> list:
    """az prints one indented JSON object per message, one after another."""
    decoder, objects, i = json.JSONDecoder(), [], 0
    while True:
        while i < len(text) and text[i].isspace():
            i += 1
        if i == len(text):
            return objects
        obj, i = decoder.raw_decode(text, i)
        objects.append(obj)


class Monitor:
    """`ironhub hub monitor-events …` running in the background; stdout collected as it comes."""

    def __init__(self, hub, *args: str):
        self.proc = subprocess.Popen(
            [ironhub_bin(), "hub", "monitor-events", *args, "--data-dir", str(hub.data_dir)],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True,
        )
        self.out: list[tuple[float, str]] = []
        self.err: list[str] = []
        self.started = threading.Event()
        threading.Thread(target=self._read_out, daemon=True).start()
        threading.Thread(target=self._read_err, daemon=True).start()
        if not self.started.wait(WAIT_S):
            self.proc.kill()
            raise AssertionError(f"monitor-events did not start: {''.join(self.err)}")

    def _read_out(self):
        for line in self.proc.stdout:
            self.out.append((time.monotonic(), line))

    def _read_err(self):
        for line in self.proc.stderr:
            self.err.append(line)
            if line.startswith("Starting event monitor"):
                self.started.set()
        self.started.set()

    def stdout(self) -> str:
        return "".join(line for _, line in self.out)

    def events(self) -> list:
        return json_stream(self.stdout())

    def wait_for_events(self, n: int) -> list:
        deadline = time.monotonic() + WAIT_S
        while time.monotonic() < deadline:
            try:
                events = self.events()
            except json.JSONDecodeError:
                events = []  # an object half written: wait for the rest
            if len(events) >= n:
                return events
            time.sleep(0.05)
        raise AssertionError(f"expected {n} events, got:\n{self.stdout()}\nstderr:\n{''.join(self.err)}")

    def finish(self, timeout: float = 30) -> tuple[int, float]:
        """Waits for the monitor to exit by itself; returns its exit code and exit time."""
        try:
            code = self.proc.wait(timeout=timeout)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
        exited = time.monotonic()
        time.sleep(0.1)  # let the reader threads drain the pipes
        return code, exited


# -- monitor-events ----------------------------------------------------------------------------


def test_sdk_telemetry_with_all_properties_streams_as_it_arrives(hub, rm):
    key = device_key(rm, "mon-sdk")
    other_key = device_key(rm, "mon-other")
    monitor = Monitor(hub, "-d", "mon-sdk", "--props", "all", "--timeout", "5")
    assert "filtering on device: mon-sdk" in "".join(monitor.err)
    before = now_ms()
    for device_id, k in [("mon-other", other_key), ("mon-sdk", key)]:
        client = sdk_client(hub, device_id, k)
        client.connect()
        msg = Message(json.dumps({"temperature": 21.5, "from": device_id}), message_id=f"id-{device_id}",
                      content_type="application/json", content_encoding="utf-8")
        msg.correlation_id = "corr-1"
        msg.custom_properties = {"alert": "high", "unit": "C/s"}
        client.send_message(msg)
        client.shutdown()
    after = now_ms()

    # Printed (and flushed) as it arrived, long before the monitor's idle timeout.
    [event] = monitor.wait_for_events(1)
    assert monitor.proc.poll() is None, "the event came only at exit"
    code, exited = monitor.finish()
    assert code == 0, "".join(monitor.err)
    assert exited - monitor.out[0][0] > 3, "the event was not printed as it arrived"
    assert len(monitor.events()) == 1, "-d let another device's event through"

    e = event["event"]
    assert list(e) == ["origin", "module", "interface", "component", "properties", "annotations", "payload"]
    assert e["origin"] == "mon-sdk" and e["module"] == "" and e["interface"] == "" and e["component"] == ""
    assert e["payload"] == {"temperature": 21.5, "from": "mon-sdk"}
    system = e["properties"]["system"]
    assert system == {"message_id": "id-mon-sdk", "correlation_id": "corr-1",
                      "content_type": "application/json", "content_encoding": "utf-8"}
    assert e["properties"]["application"] == {"alert": "high", "unit": "C/s"}
    a = e["annotations"]
    assert a["iothub-connection-device-id"] == "mon-sdk"
    assert json.loads(a["iothub-connection-auth-method"])["type"] == "sas"
    assert a["iothub-connection-auth-generation-id"] == rm.get_device("mon-sdk").generation_id
    assert a["iothub-message-source"] == "Telemetry"
    assert before - 1000 <= a["iothub-enqueuedtime"] <= after + 1000
    assert a["x-opt-enqueued-time"] == a["iothub-enqueuedtime"]
    assert isinstance(a["x-opt-sequence-number"], int) and a["x-opt-offset"] == str(a["x-opt-sequence-number"])
    # az's JSON layout: indented by four.
    assert monitor.stdout().startswith('{\n    "event": {\n        "origin": "mon-sdk",')


def test_enqueued_time_replays_and_the_default_is_now(hub, rm):
    key = device_key(rm, "mon-replay")
    before = now_ms() - 1
    client = sdk_client(hub, "mon-replay", key)
    client.connect()
    client.send_message(Message('{"n":1}', content_type="application/json", content_encoding="utf-8"))
    client.send_message(Message("second, as text"))
    client.shutdown()

    # Epoch milliseconds, as az takes them.
    out = run_cli("hub", "monitor-events", "-d", "mon-replay", "--et", str(before), "--to", "2",
                  "--data-dir", str(hub.data_dir), check=True)
    events = json_stream(out.stdout)
    assert [e["event"]["payload"] for e in events] == [{"n": 1}, "second, as text"]
    assert all("properties" not in e["event"] and "annotations" not in e["event"] for e in events)

    # RFC 3339, and --message-count.
    iso = datetime.fromtimestamp(before / 1000, timezone.utc).isoformat()
    out = run_cli("hub", "monitor-events", "-d", "mon-replay", "--enqueued-time", iso, "--mc", "1",
                  "--props", "sys", "app", "--data-dir", str(hub.data_dir), check=True)
    [only] = json_stream(out.stdout)
    assert only["event"]["properties"]["system"]["content_type"] == "application/json"
    assert only["event"]["properties"]["application"] == {}
    assert "Successfully parsed 1 message(s)." in out.stderr

    # Without --enqueued-time only new events count: nothing, then a clean exit at the timeout.
    started = time.monotonic()
    out = run_cli("hub", "monitor-events", "-d", "mon-replay", "-t", "2", "--data-dir", str(hub.data_dir), check=True)
    assert out.stdout == "" and 1.5 < time.monotonic() - started < 10

    # --output table: one line per message.
    out = run_cli("hub", "monitor-events", "-d", "mon-replay", "--et", str(before), "--to", "2", "-o", "table",
                  "--data-dir", str(hub.data_dir), check=True)
    lines = out.stdout.splitlines()
    assert len(lines) == 2 and lines[0].endswith('  mon-replay  {"n":1}') and lines[1].endswith("  second, as text")

    bad = run_cli("hub", "monitor-events", "--et", "yesterday", "--data-dir", str(hub.data_dir))
    assert bad.returncode != 0 and "--enqueued-time" in bad.stderr


def test_mosquitto_and_tasmota_messages(hub, rm):
    require_tool("mosquitto_pub")
    paho = pytest.importorskip("paho.mqtt.client")
    mosq_key = device_key(rm, "mon-mosq")
    tasmota_id = "mon-A0B1C2D3E4F5"
    tasmota_key = device_key(rm, tasmota_id)
    # A wildcard filter is applied by the monitor itself, as az does.
    monitor = Monitor(hub, "-d", "mon-*", "--props", "app", "--timeout", "4")

    base = ["-h", hub.address, "-p", "8883", "--cafile", hub.ca_file, "-V", "mqttv311", "-i", "mon-mosq",
            "-u", f"{hub.hostname}/mon-mosq/?api-version=2021-04-12", "-P", sas(f"{hub.hostname}/devices/mon-mosq", mosq_key)]
    for topic, body in [
        ("devices/mon-mosq/messages/events/", '{"temperature": 21}'),
        ("devices/mon-mosq/messages/events/%24.ct=application%2Fjson&%24.ce=utf-8&room=kitchen", '{"humidity": 40}'),
    ]:
        done = subprocess.run(["mosquitto_pub", *base, "-t", topic, "-q", "1", "-m", body],
                              capture_output=True, text=True, timeout=30)
        assert done.returncode == 0, done.stderr

    # Tasmota: QoS 0, its own topic in the property bag, token with `sr` barely encoded.
    enc = lambda s: s.replace("+", "%2B").replace("=", "%3D").replace("/", "%2F")
    sr = enc(f"{hub.hostname}/devices/{tasmota_id}")
    se = str(int(time.time()) + 86400)
    sig = base64.b64encode(hmac.new(base64.b64decode(tasmota_key), f"{sr}\n{se}".encode(), hashlib.sha256).digest()).decode()
    c = paho.Client(client_id=tasmota_id, clean_session=True, protocol=paho.MQTTv311)
    c.username_pw_set(f"{hub.hostname}/{tasmota_id}", f"SharedAccessSignature sr={sr}&sig={enc(sig)}&se={se}")
    c.tls_set(ca_certs=hub.ca_file)
    connected = threading.Event()
    c.on_connect = lambda *a: connected.set()
    c.connect(hub.address, 8883, keepalive=30)
    c.loop_start()
    try:
        assert connected.wait(WAIT_S)
        c.publish(f"devices/{tasmota_id}/messages/events/topic=tele%2F{tasmota_id}%2FSTATE",
                  '{"POWER":"ON"}', qos=0).wait_for_publish(WAIT_S)
        events = monitor.wait_for_events(3)
    finally:
        c.loop_stop()
        c.disconnect()
    code, _ = monitor.finish()
    assert code == 0, "".join(monitor.err)

    by_origin = {}
    for e in events:
        by_origin.setdefault(e["event"]["origin"], []).append(e["event"])
    plain, typed = by_origin["mon-mosq"]
    # No content type: az shows the payload as text; with application/json, as JSON.
    assert plain["payload"] == '{"temperature": 21}'  # the text as sent, its space included
    assert plain["properties"] == {"application": {}}
    assert typed["payload"] == {"humidity": 40}
    assert typed["properties"] == {"application": {"room": "kitchen"}}
    [tasmota] = by_origin[tasmota_id]
    assert tasmota["payload"] == '{"POWER":"ON"}'
    assert tasmota["properties"]["application"] == {"topic": f"tele/{tasmota_id}/STATE"}

    # --content-type application/json makes az parse every payload.
    out = run_cli("hub", "monitor-events", "-d", "mon-mosq", "--et", "0", "--to", "2", "--ct", "application/json",
                  "--data-dir", str(hub.data_dir), check=True)
    assert [e["event"]["payload"] for e in json_stream(out.stdout)] == [{"temperature": 21}, {"humidity": 40}]


def test_event_stream_over_https_carries_every_system_property(hub, rm):
    key = device_key(rm, "mon-https")
    since = datetime.now(timezone.utc).isoformat()
    client = sdk_client(hub, "mon-https", key)
    client.connect()
    msg = Message(b'{"v":1}', message_id="mid-1", content_type="application/json", content_encoding="utf-8")
    msg.correlation_id = "cid-1"
    msg.user_id = "uid-1"
    msg.custom_properties = {"k": "v"}
    client.send_message(msg)
    client.shutdown()

    lines = read_stream(hub, "mon-https", since)
    [line] = lines
    assert line["deviceId"] == "mon-https" and line["moduleId"] is None
    assert line["body"] == {"v": 1} and "bodyEncoding" not in line
    assert line["applicationProperties"] == {"k": "v"}
    seq, enq = line["sequenceNumber"], line["enqueuedTime"]
    assert line["offset"] == str(seq) and isinstance(line["partition"], int)
    system = line["systemProperties"]
    auth_method = json.loads(system.pop("iothub-connection-auth-method"))
    assert auth_method == {"scope": "device", "type": "sas", "issuer": "iothub", "acceptingIpFilterRule": None}
    assert system == {
        "message-id": "mid-1",
        "correlation-id": "cid-1",
        "user-id": "uid-1",
        "content-type": "application/json",
        "content-encoding": "utf-8",
        "iothub-connection-device-id": "mon-https",
        "iothub-connection-auth-generation-id": rm.get_device("mon-https").generation_id,
        "iothub-message-source": "Telemetry",
        "iothub-enqueuedtime": enq,
        "x-opt-sequence-number": seq,
        "x-opt-offset": str(seq),
        "x-opt-enqueued-time": enq,
    }


def test_device_properties_cannot_imitate_the_hub(hub, rm):
    """Issue 15: `iothub-*` names are the hub's. A device's application property named so is
    dropped, over MQTT and HTTPS alike, and a user-id naming the hub is not kept; the device's
    other properties are."""
    require_tool("mosquitto_pub")
    key = device_key(rm, "mon-spoof")
    since = datetime.now(timezone.utc).isoformat()
    hub_name = hub.hostname.split(".")[0]
    bag = urllib.parse.urlencode(
        [("$.uid", hub_name), ("iothub-connection-device-id", "victim"), ("iothub-MessageType", "Will"), ("k", "v")],
        quote_via=urllib.parse.quote,
    )
    done = subprocess.run(
        ["mosquitto_pub", "-h", hub.address, "-p", "8883", "--cafile", hub.ca_file, "-V", "mqttv311", "-i", "mon-spoof",
         "-u", f"{hub.hostname}/mon-spoof/?api-version=2021-04-12", "-P", sas(f"{hub.hostname}/devices/mon-spoof", key),
         "-t", f"devices/mon-spoof/messages/events/{bag}", "-q", "1", "-m", "over mqtt"],
        capture_output=True, text=True, timeout=30,
    )
    assert done.returncode == 0, done.stderr
    r = requests.post(
        f"https://{hub.address}/devices/mon-spoof/messages/events",
        params={"api-version": "2021-04-12"},
        headers={"Authorization": sas(f"{hub.hostname}/devices/mon-spoof", key), "iothub-userid": hub.hostname,
                 "iothub-app-iothub-connection-device-id": "victim", "iothub-app-k": "v"},
        data=b"over https", verify=hub.ca_file, timeout=30,
    )
    assert r.status_code == 204, r.text

    lines = read_stream(hub, "mon-spoof", since)
    assert [line["body"] for line in lines] == ["over mqtt", "over https"]
    for line in lines:
        assert line["applicationProperties"] == {"k": "v"}
        assert line["systemProperties"]["iothub-connection-device-id"] == "mon-spoof"
        assert "user-id" not in line["systemProperties"]


# -- consumer groups ---------------------------------------------------------------------------


def test_consumer_group_commands(hub, rm):
    d = ["--data-dir", str(hub.data_dir)]
    # As in az: -n is the group, the hub is --hub-name.
    created = json.loads(run_cli("hub", "consumer-group", "create", "--hub-name", hub.hostname, "-n", "mon-cg", *d,
                                 check=True).stdout)
    assert created["name"] == "mon-cg"
    assert all(p["checkpointSequenceNumber"] is None for p in created["partitions"])
    names = [g["name"] for g in json.loads(run_cli("hub", "consumer-group", "list", *d, check=True).stdout)]
    assert "$Default" in names and "mon-cg" in names
    shown = json.loads(run_cli("hub", "consumer-group", "show", "--name", "mon-cg", *d, check=True).stdout)
    assert shown["name"] == "mon-cg"

    key = device_key(rm, "mon-cg-dev")
    monitor = Monitor(hub, "--cg", "mon-cg", "-d", "mon-cg-dev", "--to", "3")
    client = sdk_client(hub, "mon-cg-dev", key)
    client.connect()
    client.send_message(Message("via a consumer group"))
    client.shutdown()
    [event] = monitor.wait_for_events(1)
    assert monitor.finish()[0] == 0
    assert event["event"]["payload"] == "via a consumer group"

    wrong = run_cli("hub", "consumer-group", "create", "--hub-name", "otherhub", "-n", "x", *d)
    assert wrong.returncode != 0 and "--hub-name 'otherhub' does not match" in wrong.stderr
    deleted = run_cli("hub", "consumer-group", "delete", "-n", "mon-cg", *d, check=True)
    assert deleted.stdout == ""
    gone = run_cli("hub", "consumer-group", "show", "-n", "mon-cg", *d)
    assert gone.returncode != 0 and "mon-cg" in gone.stderr
    missing = run_cli("hub", "monitor-events", "--cg", "mon-cg", "--to", "1", *d)
    assert missing.returncode != 0


# -- CA certificates ---------------------------------------------------------------------------


def openssl(*args: str, cwd) -> None:
    subprocess.run(["openssl", *args], check=True, capture_output=True, cwd=cwd)


def signed_cert(tmp, name: str, cn: str) -> str:
    """A key and an X.509 v3 client certificate with CN=cn signed by tmp/ca.pem; returns the
    certificate's path. (`openssl x509 -req` without extensions makes a v1 certificate, which
    ironhub accepts too; test_cli_gaps.py tests those.)"""
    (tmp / "client.ext").write_text(
        "basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=clientAuth\n"
    )
    openssl("req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
            "-keyout", f"{name}.key", "-out", f"{name}.csr", "-subj", f"/CN={cn}", cwd=tmp)
    openssl("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
            "-days", "2", "-sha256", "-extfile", "client.ext", "-out", f"{name}.pem", cwd=tmp)
    return str(tmp / f"{name}.pem")


def test_certificate_proof_of_possession(hub, rm, tmp_path):
    require_tool("openssl")
    d = ["--data-dir", str(hub.data_dir)]
    cli = lambda *args: json.loads(run_cli("hub", "certificate", *args, *d, check=True).stdout)
    openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-keyout", "ca.key",
            "-out", "ca.pem", "-days", "3", "-subj", "/CN=Monitor Test Root CA",
            "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign",
            cwd=tmp_path)
    ca_der = ssl.PEM_cert_to_DER_cert((tmp_path / "ca.pem").read_text())

    created = cli("create", "--hub-name", hub.hostname, "--name", "mon-ca", "--path", str(tmp_path / "ca.pem"))
    assert created["name"] == "mon-ca" and created["type"] == "Microsoft.Devices/IotHubs/Certificates"
    props = created["properties"]
    assert props["isVerified"] is False and "CN=Monitor Test Root CA" in props["subject"]
    assert props["thumbprint"].upper() in (hashlib.sha1(ca_der).hexdigest().upper(),
                                           hashlib.sha256(ca_der).hexdigest().upper())
    again = run_cli("hub", "certificate", "create", "-n", "mon-ca", "-p", str(tmp_path / "ca.pem"), *d)
    assert again.returncode != 0

    assert "mon-ca" in [c["name"] for c in cli("list")["value"]]
    shown = cli("show", "-n", "mon-ca")
    assert shown["etag"] == created["etag"]

    code = cli("generate-verification-code", "-n", "mon-ca", "-e", shown["etag"])
    verification_code = code["properties"]["verificationCode"]
    assert verification_code and code["etag"] != shown["etag"]
    stale = run_cli("hub", "certificate", "verify", "-n", "mon-ca", "-p", signed_cert(tmp_path, "proof", verification_code),
                    "-e", shown["etag"], *d)
    assert stale.returncode != 0, "a stale etag was accepted"
    wrong_cn = run_cli("hub", "certificate", "verify", "-n", "mon-ca", "-p", signed_cert(tmp_path, "wrong", "not-the-code"),
                       "-e", code["etag"], *d)
    assert wrong_cn.returncode != 0 and cli("show", "-n", "mon-ca")["properties"]["isVerified"] is False

    verified = cli("verify", "-n", "mon-ca", "-p", str(tmp_path / "proof.pem"), "-e", code["etag"])
    assert verified["properties"]["isVerified"] is True
    assert cli("show", "-n", "mon-ca")["properties"]["isVerified"] is True

    # The verified CA admits a device whose certificate it signed (CN = device id); its
    # telemetry shows up in monitor-events with the CA authentication method.
    run_cli("hub", "device-identity", "create", "-d", "mon-ca-dev", "--am", "x509_ca", *d, check=True)
    device_cert = signed_cert(tmp_path, "device", "mon-ca-dev")
    monitor = Monitor(hub, "-d", "mon-ca-dev", "--props", "anno", "--to", "3")
    if have_tool("mosquitto_pub"):
        sent = subprocess.run(
            ["mosquitto_pub", "-h", hub.address, "-p", "8883", "--cafile", hub.ca_file, "--cert", device_cert,
             "--key", str(tmp_path / "device.key"), "-V", "mqttv311", "-i", "mon-ca-dev",
             "-u", f"{hub.hostname}/mon-ca-dev/?api-version=2021-04-12",
             "-t", "devices/mon-ca-dev/messages/events/", "-q", "1", "-m", "signed by my CA"],
            capture_output=True, text=True, timeout=30)
        assert sent.returncode == 0, sent.stderr
        [event] = monitor.wait_for_events(1)
        assert event["event"]["payload"] == "signed by my CA"
        assert json.loads(event["event"]["annotations"]["iothub-connection-auth-method"])["type"] == "x509Certificate"
    assert monitor.finish()[0] == 0

    deleted = run_cli("hub", "certificate", "delete", "-n", "mon-ca", "-e", "stale-etag", *d)
    assert deleted.returncode != 0
    etag = cli("show", "-n", "mon-ca")["etag"]
    assert run_cli("hub", "certificate", "delete", "-n", "mon-ca", "-e", etag, *d, check=True).stdout == ""
    assert "mon-ca" not in [c["name"] for c in cli("list")["value"]]
