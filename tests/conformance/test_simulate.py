"""`ironhub simulate`, the fleet simulator, run as a user runs it against a running server:
devices pre-created through the registry API and devices provisioned through DPS with a group
key send telemetry and twin updates while the Python service SDK sends them a C2D message and
calls a direct method; the JSON report must agree with what the hub's event stream holds. The
plain-MQTT mode runs the same load against a Mosquitto broker the test starts, over TCP and
over TLS."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess

import pytest
from azure.iot.hub.models import CloudToDeviceMethod

from conftest import have_tool, ironhub_bin, test_address
from dps_helpers import dps_info, stored_events, wait_for

IRONHUB_ADDRESS = test_address("127.0.0.195")
RUN_TIMEOUT_S = 120
MOSQUITTO = "/usr/sbin/mosquitto"


def clean_env() -> dict:
    return {k: v for k, v in os.environ.items() if not k.startswith("IRONHUB_")}


def start_simulate(*args: str) -> subprocess.Popen:
    return subprocess.Popen(
        [ironhub_bin(), "simulate", "--output", "json", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        text=True,
        env=clean_env(),
    )


def finish(proc: subprocess.Popen) -> dict:
    try:
        out, err = proc.communicate(timeout=RUN_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
        raise AssertionError(f"ironhub simulate did not finish in {RUN_TIMEOUT_S} s\n{err}")
    assert proc.returncode == 0, f"exit {proc.returncode}\n--- stdout ---\n{out}\n--- stderr ---\n{err}"
    return json.loads(out)


def connected(rm, device_id: str) -> bool:
    try:
        return rm.get_device(device_id).connection_state == "Connected"
    except Exception:
        return False


def events_of(hub, prefix: str, count: int) -> list:
    """Every event the hub's event stream holds for the fleet's devices `{prefix}0…`."""
    events = []
    for i in range(count):
        events += stored_events(hub, f"{prefix}{i}")
    return events


def check_counts(hub, report: dict, prefix: str, devices: int) -> None:
    assert report["errors"] == {}, report
    assert report["devices"]["connected"] == devices, report
    messages = report["messages"]
    assert messages["sent"] > 0, report
    assert messages["acknowledged"] == messages["sent"], report
    assert messages["inEventStream"] == messages["sent"], report
    held = events_of(hub, prefix, devices)
    assert len(held) == messages["sent"], (len(held), report)
    ids = {e["systemProperties"]["message-id"] for e in held}
    assert len(ids) == len(held), "every message has its own id"
    assert report["latencyMs"]["publishToPuback"]["count"] == messages["sent"], report
    assert report["latencyMs"]["publishToEventStream"]["count"] == messages["sent"], report
    assert report["latencyMs"]["publishToPuback"]["p50"] > 0, report


def test_precreated_devices_send_and_answer_c2d_and_methods(hub, rm, amqp_registry):
    prefix, devices = "pre-", 10
    proc = start_simulate(
        "--data-dir", str(hub.data_dir), "--create", "--device-prefix", prefix,
        "--device-count", str(devices), "--duration", "6", "--msg-interval", "0.5",
        "--twin-interval", "1", "--msg-size", "300",
    )
    try:
        wait_for(lambda: connected(rm, f"{prefix}0") and connected(rm, f"{prefix}1"), timeout=30,
                 what="simulated devices to connect")
        amqp_registry.send_c2d_message(f"{prefix}0", "hello from the service", {"k": "v"})
        result = rm.invoke_device_method(
            f"{prefix}1",
            CloudToDeviceMethod(method_name="echo", payload={"n": 7}, response_timeout_in_seconds=10),
        )
        assert result.status == 200
        assert result.payload == {"n": 7}, "the default answer echoes the request"
    finally:
        report = finish(proc)
    check_counts(hub, report, prefix, devices)
    assert report["mode"] == "iothub"
    assert report["devices"]["created"] == devices, report
    assert report["methods"] == {"received": 1, "answered": 1}, report
    assert report["c2d"] == {"received": 1, "completed": 1}, report
    assert rm.get_device(f"{prefix}0").cloud_to_device_message_count == 0, "the C2D message was completed"
    assert report["twin"]["sent"] > 0 and report["twin"]["accepted"] == report["twin"]["sent"], report
    twin = rm.get_twin(f"{prefix}3")
    assert twin.properties.reported["simulator"]["seq"] >= 1, twin.properties.reported
    # Existing devices are read, not recreated, when --create is given again (and without it).
    again = finish(start_simulate(
        "--data-dir", str(hub.data_dir), "--device-prefix", prefix, "--device-count", "2",
        "--msg-count", "3", "--msg-interval", "0.1", "--qos", "0", "--no-progress",
    ))
    assert again["errors"] == {} and again["messages"]["sent"] == 6, again
    assert again["messages"]["inEventStream"] == 6 and again["messages"]["acknowledged"] == 0, again


def test_devices_provisioned_through_dps_with_a_group_key(hub, rm):
    prefix, devices = "dpsim-", 10
    created = subprocess.run(
        [ironhub_bin(), "dps", "enrollment-group", "create", "--gid", "simulated-fleet",
         "--data-dir", str(hub.data_dir)],
        capture_output=True, text=True, timeout=30, env=clean_env(), stdin=subprocess.DEVNULL,
    )
    assert created.returncode == 0, created.stderr
    group_key = json.loads(created.stdout)["attestation"]["symmetricKey"]["primaryKey"]
    proc = start_simulate(
        "--login", hub.connection_string, "--ca-file", hub.ca_file, "--hub-name", hub.hostname,
        "--dps-scope", dps_info(hub)["idScope"], "--dps-endpoint", hub.address,
        "--group-key", group_key, "--device-prefix", prefix, "--device-count", str(devices),
        "--duration", "5", "--msg-rate", "20", "--source-addresses", f"{'.'.join(hub.address.split('.')[:3])}.200/29",
    )
    try:
        wait_for(lambda: connected(rm, f"{prefix}4"), timeout=30, what="a provisioned device to connect")
        result = rm.invoke_device_method(
            f"{prefix}4",
            CloudToDeviceMethod(method_name="anything", payload="text", response_timeout_in_seconds=10),
        )
        assert (result.status, result.payload) == (200, "text")
    finally:
        report = finish(proc)
    check_counts(hub, report, prefix, devices)
    assert report["devices"]["provisioned"] == devices and report["devices"]["created"] == 0, report
    assert report["methods"]["answered"] == 1, report


@pytest.fixture
def mosquitto(hub, tmp_path):
    """A Mosquitto broker on the module's address: plain MQTT on 1883, TLS on 8884 with the
    hub's server certificate."""
    # Debian installs the broker in /usr/sbin, which a user's PATH may not hold.
    binary = MOSQUITTO if os.access(MOSQUITTO, os.X_OK) else "mosquitto"
    if binary != MOSQUITTO and not have_tool("mosquitto"):
        pytest.skip("mosquitto is not installed (scripts/test installs it as root)")
    tls = hub.data_dir / "tls"
    conf = tmp_path / "mosquitto.conf"
    conf.write_text(
        # `user root`: otherwise Mosquitto drops to its own user, which cannot read the key.
        "user root\npersistence false\nallow_anonymous true\n"
        f"listener 1883 {hub.address}\n"
        f"listener 8884 {hub.address}\ncafile {tls / 'ca.pem'}\ncertfile {tls / 'server.pem'}\n"
        f"keyfile {tls / 'server-key.pem'}\n"
    )
    proc = subprocess.Popen([binary, "-c", str(conf)], stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, start_new_session=True)

    def listening(port: int) -> bool:
        if proc.poll() is not None:
            raise AssertionError(f"mosquitto exited: {proc.stderr.read().decode()}")
        try:
            with socket.create_connection((hub.address, port), timeout=1.0):
                return True
        except OSError:
            return False

    try:
        wait_for(lambda: listening(1883) and listening(8884), timeout=15, what="mosquitto to listen")
        yield hub.address
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)


@pytest.mark.parametrize("tls", [False, True], ids=["tcp", "tls"])
def test_plain_mqtt_mode_loads_another_broker(mosquitto, hub, tls):
    if not have_tool("mosquitto_sub"):
        pytest.skip("mosquitto_sub is not installed")
    devices, count = 10, 10
    total = devices * count
    # A subscriber on the broker counts what the simulated devices delivered. It is subscribed
    # once it has printed the retained probe, which is delivered on subscription.
    probe = subprocess.run(["mosquitto_pub", "-h", mosquitto, "-p", "1883", "-t", "probe", "-r", "-m", "x"],
                           capture_output=True, timeout=15)
    assert probe.returncode == 0, probe.stderr
    sub = subprocess.Popen(
        ["mosquitto_sub", "-h", mosquitto, "-p", "1883", "-t", "probe", "-t", "devices/+/messages/events/#",
         "-q", "1", "-C", str(total + 1), "-W", "60", "-v"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True,
    )
    try:
        assert sub.stdout.readline().strip() == "probe x", "the subscriber got the retained probe"
        args = ["--mqtt-broker", f"{mosquitto}:{8884 if tls else 1883}", "--device-count", str(devices),
                "--msg-count", str(count), "--msg-interval", "0.05", "--msg-size", "100"]
        if tls:
            args += ["--mqtt-tls", "--ca-file", hub.ca_file]
        report = finish(start_simulate(*args))
        out, err = sub.communicate(timeout=60)
    finally:
        if sub.poll() is None:
            sub.kill()
            sub.wait()
    assert report["mode"] == "mqtt", report
    assert report["errors"] == {}, report
    assert report["devices"]["connected"] == devices, report
    assert report["messages"]["sent"] == total and report["messages"]["acknowledged"] == total, report
    assert report["messages"]["inEventStream"] is None, report
    assert report["latencyMs"]["publishToPuback"]["count"] == total, report
    lines = [l for l in out.splitlines() if l.startswith("devices/")]
    assert len(lines) == total, (len(lines), err)
    assert len({l.split(" ", 1)[0] for l in lines}) == devices, "one topic per device"
