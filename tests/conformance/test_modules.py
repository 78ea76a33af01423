"""Module identities (`/devices/{id}/modules/{mid}`) through the real service SDKs: Python's
`IoTHubRegistryManager` and Node's `azure-iothub` `Registry`. The assertions are what an
application sees: return values, error statuses and IoT Hub's error codes, and that a refused
request changed nothing."""

from __future__ import annotations

import itertools
import json
import os
import shutil
import subprocess
import threading
from pathlib import Path

import pytest
from azure.iot.device import IoTHubModuleClient, Message, MethodResponse
from azure.iot.hub.models import CloudToDeviceMethod, Twin, TwinProperties
from msrest.exceptions import HttpOperationError

from conftest import assert_hub_error, ironhub_bin
from dps_helpers import sas, stored_events, wait_for

from azure.iot.hub.protocol.models import Module

IRONHUB_ADDRESS = "127.0.0.165"
TIMEOUT_S = 60
NODE_DIR = Path(__file__).resolve().parent / "node"

_counter = itertools.count(1)


def uid(prefix: str) -> str:
    return f"{prefix}-{next(_counter)}"


def assert_error(excinfo, status: int, error_code: str) -> None:
    assert_hub_error(excinfo, status, error_code)
    response = excinfo.value.response
    assert response.json().get("Message", "").startswith(f"ErrorCode:{error_code};"), response.text


def node(hub, *args: str) -> dict:
    """`node modules.js <args>` with the owner connection string, trusting the server's CA."""
    if shutil.which("node") is None or not (NODE_DIR / "node_modules" / "azure-iothub").is_dir():
        pytest.fail("node and the Node SDKs are needed: run the suite through scripts/test", pytrace=False)
    env = {k: v for k, v in os.environ.items() if k != "DEBUG"}
    env["NODE_EXTRA_CA_CERTS"] = hub.ca_file
    env["IRONHUB_CONNECTION_STRING"] = hub.connection_string
    proc = subprocess.run(["node", "modules.js", *args], cwd=NODE_DIR, env=env, capture_output=True, text=True,
                          timeout=TIMEOUT_S, stdin=subprocess.DEVNULL)
    lines = [line for line in proc.stdout.splitlines() if line.strip()]
    out = json.loads(lines[-1]) if lines else {}
    assert proc.returncode == 0 and "error" not in out, f"node modules.js failed: {proc.stdout}\n{proc.stderr}"
    return out


def test_sas_module_lifecycle_with_the_python_registry_manager(rm):
    device_id, module_id = uid("d"), "temp-sensor"
    rm.create_device_with_sas(device_id, "", "", "enabled")

    created = rm.create_module_with_sas(device_id, module_id, "me", "", "")
    assert (created.device_id, created.module_id, created.managed_by) == (device_id, module_id, "me")
    assert created.etag and created.generation_id
    assert created.connection_state == "Disconnected"
    assert created.cloud_to_device_message_count == 0
    keys = created.authentication.symmetric_key
    assert created.authentication.type == "sas" and keys.primary_key and keys.secondary_key, "keys are generated"

    got = rm.get_module(device_id, module_id)
    assert (got.etag, got.authentication.symmetric_key.primary_key) == (created.etag, keys.primary_key)
    rm.create_module_with_sas(device_id, "another", None, "", "")
    assert [m.module_id for m in rm.get_modules(device_id)] == ["another", module_id]

    with pytest.raises(HttpOperationError) as e:
        rm.create_module_with_sas(device_id, module_id, None, "", "")
    assert_error(e, 409, "ModuleAlreadyExistsOnDevice")

    with pytest.raises(HttpOperationError) as e:
        rm.update_module_with_sas(device_id, module_id, "other", "stale-etag", "", "")
    assert_error(e, 412, "PreconditionFailed")
    assert rm.get_module(device_id, module_id).managed_by == "me", "a refused update changes nothing"

    updated = rm.update_module_with_sas(device_id, module_id, "other", created.etag, "", "")
    assert updated.managed_by == "other" and updated.etag != created.etag
    assert updated.authentication.symmetric_key.primary_key == keys.primary_key, "an update keeps the keys"
    assert updated.generation_id == created.generation_id

    with pytest.raises(HttpOperationError) as e:
        rm.delete_module(device_id, module_id, etag=created.etag)
    assert_error(e, 412, "PreconditionFailed")
    rm.delete_module(device_id, module_id, etag=updated.etag)
    with pytest.raises(HttpOperationError) as e:
        rm.get_module(device_id, module_id)
    assert_error(e, 404, "ModuleNotFound")
    with pytest.raises(HttpOperationError) as e:
        rm.delete_module(device_id, module_id)
    assert_error(e, 404, "ModuleNotFound")


def test_x509_and_ca_modules(rm):
    device_id = uid("d")
    rm.create_device_with_sas(device_id, "", "", "enabled")
    tp = "AB" * 20
    m = rm.create_module_with_x509(device_id, "x", None, tp.lower(), None)
    assert m.authentication.type == "selfSigned"
    assert m.authentication.x509_thumbprint.primary_thumbprint == tp
    ca = rm.create_module_with_certificate_authority(device_id, "ca", None)
    assert ca.authentication.type == "certificateAuthority"
    assert not ca.authentication.symmetric_key.primary_key


def test_modules_of_a_missing_device_and_bad_ids(rm):
    with pytest.raises(HttpOperationError) as e:
        rm.create_module_with_sas("no-such-device", "m", None, "", "")
    assert_error(e, 404, "DeviceNotFound")
    with pytest.raises(HttpOperationError) as e:
        rm.get_modules("no-such-device")
    assert_error(e, 404, "DeviceNotFound")
    with pytest.raises(HttpOperationError) as e:
        rm.get_module("no-such-device", "m")
    assert_error(e, 404, "DeviceNotFound")

    device_id = uid("d")
    rm.create_device_with_sas(device_id, "", "", "enabled")
    for bad in ["has space", "x" * 129, "hash#"]:
        with pytest.raises(HttpOperationError) as e:
            rm.create_module_with_sas(device_id, bad, None, "", "")
        assert_error(e, 400, "ArgumentInvalid")
    with pytest.raises(HttpOperationError) as e:
        rm.create_module_with_sas(device_id, "k", None, "not-base64!", "")
    assert_error(e, 400, "ArgumentInvalid")
    # A body naming another module than the URL.
    with pytest.raises(HttpOperationError) as e:
        rm.protocol.modules.create_or_update_identity(device_id, "k", Module(device_id=device_id, module_id="other"))
    assert_error(e, 400, "ArgumentInvalid")
    assert rm.get_modules(device_id) == [], "refused requests change nothing"


def test_a_device_deleted_takes_its_modules(rm):
    device_id = uid("d")
    rm.create_device_with_sas(device_id, "", "", "enabled")
    rm.create_module_with_sas(device_id, "m", None, "", "")
    rm.delete_device(device_id)
    rm.create_device_with_sas(device_id, "", "", "enabled")
    assert rm.get_modules(device_id) == []


def test_node_registry_module_calls(hub, rm):
    device_id = uid("d")
    rm.create_device_with_sas(device_id, "", "", "enabled")
    out = node(hub, "lifecycle", "--device-id", device_id, "--module-id", "nodemod")
    assert out["got"]["moduleId"] == "nodemod" and out["got"]["deviceId"] == device_id
    assert out["got"]["authentication"]["type"] == "sas"
    assert [m["moduleId"] for m in out["list"]] == ["nodemod"]
    assert out["stale"]["statusCode"] == 412, out["stale"]
    assert out["added"]["statusCode"] == 409, out["added"]
    assert out["gone"]["statusCode"] == 404, out["gone"]
    assert rm.get_modules(device_id) == []


def test_module_twin_tags_and_desired(rm):
    device_id = uid("d")
    rm.create_device_with_sas(device_id, "", "", "enabled")
    rm.create_module_with_sas(device_id, "m", None, "", "")
    twin = rm.get_module_twin(device_id, "m")
    assert (twin.device_id, twin.module_id) == (device_id, "m")
    assert twin.etag and twin.properties.desired["$version"] == 1

    patched = rm.update_module_twin(
        device_id, "m", Twin(tags={"site": "north"}, properties=TwinProperties(desired={"rate": 5})), twin.etag
    )
    assert patched.tags == {"site": "north"}
    assert patched.properties.desired["rate"] == 5 and patched.properties.desired["$version"] == 2
    assert patched.etag != twin.etag
    assert rm.get_twin(device_id).tags in (None, {}), "the device's twin is its own"

    with pytest.raises(HttpOperationError) as e:
        rm.update_module_twin(device_id, "m", Twin(tags={"x": 1}), twin.etag)
    assert_error(e, 412, "PreconditionFailed")
    assert rm.get_module_twin(device_id, "m").tags == {"site": "north"}, "a refused patch changes nothing"

    replaced = rm.replace_module_twin(device_id, "m", Twin(tags={"only": True}))
    assert replaced.tags == {"only": True}
    assert "rate" not in replaced.properties.desired

    with pytest.raises(HttpOperationError) as e:
        rm.get_module_twin(device_id, "nope")
    assert_error(e, 404, "ModuleNotFound")
    with pytest.raises(HttpOperationError) as e:
        rm.update_module_twin("no-such-device", "m", Twin(tags={"x": 1}))
    assert_error(e, 404, "DeviceNotFound")


# --- modules over MQTT ------------------------------------------------------------------------

WAIT_S = 20


def module_client(hub, device_id: str, module_id: str, key: str) -> IoTHubModuleClient:
    cs = f"HostName={hub.hostname};DeviceId={device_id};ModuleId={module_id};SharedAccessKey={key}"
    return IoTHubModuleClient.create_from_connection_string(cs, server_verification_cert=open(hub.ca_file).read())


def test_module_client_telemetry_twin_and_methods_over_mqtt(hub, rm):
    device_id = uid("d")
    rm.create_device_with_sas(device_id, "", "", "enabled")
    key = rm.create_module_with_sas(device_id, "sensor", None, "", "").authentication.symmetric_key.primary_key
    client = module_client(hub, device_id, "sensor", key)
    client.connect()
    try:
        assert rm.get_device(device_id).connection_state == "Disconnected", \
            "a module's connection is not the device's"

        client.send_message(Message('{"t":1}', content_type="application/json", content_encoding="utf-8"))
        [event] = stored_events(hub, device_id)
        assert event["body"] == {"t": 1}
        assert event["systemProperties"]["iothub-connection-device-id"] == device_id
        assert event["systemProperties"]["iothub-connection-module-id"] == "sensor"

        twin = client.get_twin()
        assert twin["desired"]["$version"] == 1
        client.patch_twin_reported_properties({"temp": 21})
        assert rm.get_module_twin(device_id, "sensor").properties.reported["temp"] == 21
        assert "temp" not in rm.get_twin(device_id).properties.reported, "the device's twin is its own"

        patches = []
        client.on_twin_desired_properties_patch_received = patches.append

        def patched():
            if not patches:  # the SDK subscribes in the background: send again until heard
                rm.update_module_twin(device_id, "sensor", Twin(properties=TwinProperties(desired={"fw": "2"})))
            return patches

        wait_for(patched, what="the desired patch")
        assert patches[0]["fw"] == "2"

        def on_method(request):
            client.send_method_response(MethodResponse.create_from_method_request(request, 200, {"got": request.payload}))

        client.on_method_request_received = on_method
        request = CloudToDeviceMethod(method_name="reset", payload={"n": 1}, response_timeout_in_seconds=10)

        def invoked():
            try:
                return rm.invoke_device_module_method(device_id, "sensor", request)
            except HttpOperationError as e:  # not subscribed yet
                assert e.response.status_code == 404, e.response.text
                return None

        result = wait_for(invoked, what="the method's answer")
        assert result.status == 200 and result.payload == {"got": {"n": 1}}
        with pytest.raises(HttpOperationError) as e:
            rm.invoke_device_method(device_id, CloudToDeviceMethod(method_name="reset", payload={}))
        assert_error(e, 404, "DeviceNotOnline")
    finally:
        client.shutdown()


def connack(hub, client_id: str, username: str, password: str, publish_to: str | None = None):
    """Connects with paho; returns the CONNACK code and, with `publish_to`, whether the server
    closed the connection after a QoS 1 PUBLISH there."""
    import paho.mqtt.client as paho

    result, done, gone = {}, threading.Event(), threading.Event()
    c = paho.Client(client_id=client_id, clean_session=True, protocol=paho.MQTTv311)
    c.username_pw_set(username, password)
    c.tls_set(ca_certs=hub.ca_file)
    c.on_connect = lambda client, userdata, flags, rc: (result.__setitem__("rc", rc), done.set())
    c.on_disconnect = lambda client, userdata, rc: gone.set()
    c.connect(hub.address, 8883, keepalive=30)
    c.loop_start()
    try:
        assert done.wait(WAIT_S), "no CONNACK"
        if publish_to is not None and result["rc"] == 0:
            c.publish(publish_to, b"x", qos=1)
            result["closed"] = gone.wait(WAIT_S)
    finally:
        c.loop_stop()
        c.disconnect()
    return result


def test_a_module_token_is_the_module_s_only(hub, rm):
    device_id = uid("d")
    rm.create_device_with_sas(device_id, "", "", "enabled")
    key = rm.create_module_with_sas(device_id, "m1", None, "", "").authentication.symmetric_key.primary_key
    rm.create_module_with_sas(device_id, "m2", None, "", "")
    token = sas(f"{hub.hostname}/devices/{device_id}/modules/m1", key)
    user = f"{hub.hostname}/{device_id}/m1/?api-version=2021-04-12"
    assert connack(hub, f"{device_id}/m1", user, token)["rc"] == 0
    # Another module's identity, or the device's, with m1's token.
    other_user = f"{hub.hostname}/{device_id}/m2/?api-version=2021-04-12"
    assert connack(hub, f"{device_id}/m2", other_user, token)["rc"] == 5
    assert connack(hub, device_id, f"{hub.hostname}/{device_id}/?api-version=2021-04-12", token)["rc"] == 5
    # m1's connection publishing on m2's telemetry topic is closed, and nothing is stored.
    out = connack(hub, f"{device_id}/m1", user, token, publish_to=f"devices/{device_id}/modules/m2/messages/events/")
    assert out["closed"], "the server must close a connection that publishes on another module's topic"
    assert stored_events(hub, device_id) == []
    # A deleted module cannot connect any more.
    rm.delete_module(device_id, "m1")
    assert connack(hub, f"{device_id}/m1", user, token)["rc"] == 5


# --- the CLI ------------------------------------------------------------------------------------


def cli(hub, *args: str, ok: bool = True):
    """`ironhub hub <args> --data-dir <the server's>`; the parsed JSON output, or the process
    when `ok` is False."""
    proc = subprocess.run([ironhub_bin(), "hub", *args, "--data-dir", str(hub.data_dir)], capture_output=True,
                          text=True, timeout=TIMEOUT_S, stdin=subprocess.DEVNULL)
    if not ok:
        return proc
    assert proc.returncode == 0, f"`{' '.join(args)}` exited {proc.returncode}:\n{proc.stdout}\n{proc.stderr}"
    return json.loads(proc.stdout) if proc.stdout.strip() else None


def test_cli_module_commands(hub, rm):
    device_id = uid("d")
    rm.create_device_with_sas(device_id, "", "", "enabled")
    ids = ["-d", device_id, "-m", "cli-mod"]
    created = cli(hub, "module-identity", "create", *ids)
    assert created["moduleId"] == "cli-mod" and created["authentication"]["type"] == "sas"
    assert cli(hub, "module-identity", "show", *ids)["etag"] == created["etag"]
    assert [m["moduleId"] for m in cli(hub, "module-identity", "list", "-d", device_id)] == ["cli-mod"]
    cs = cli(hub, "module-identity", "connection-string", "show", *ids)["connectionString"]
    key = created["authentication"]["symmetricKey"]["primaryKey"]
    assert cs == f"HostName={hub.hostname};DeviceId={device_id};ModuleId=cli-mod;SharedAccessKey={key}"
    tp = "CD" * 20
    updated = cli(hub, "module-identity", "update", *ids, "--auth-method", "x509_thumbprint",
                  "--primary-thumbprint", tp)
    assert updated["authentication"]["type"] == "selfSigned"
    assert updated["authentication"]["x509Thumbprint"]["primaryThumbprint"] == tp

    twin = cli(hub, "module-twin", "update", *ids, "--desired", '{"rate": 3}', "--tags", '{"site": "a"}')
    assert twin["moduleId"] == "cli-mod" and twin["properties"]["desired"]["rate"] == 3 and twin["tags"] == {"site": "a"}
    twin = cli(hub, "module-twin", "replace", *ids, "--json", '{"tags": {"b": 1}}')
    assert twin["tags"] == {"b": 1} and "rate" not in twin["properties"]["desired"]
    assert cli(hub, "module-twin", "show", *ids)["tags"] == {"b": 1}

    # Nobody listens: IoT Hub's 404 DeviceNotOnline.
    proc = cli(hub, "invoke-module-method", *ids, "--method-name", "x", "--timeout", "5", ok=False)
    assert proc.returncode != 0 and "DeviceNotOnline" in proc.stderr + proc.stdout, proc.stderr

    assert cli(hub, "module-identity", "delete", *ids) is None
    proc = cli(hub, "module-identity", "show", *ids, ok=False)
    assert proc.returncode != 0 and "ModuleNotFound" in proc.stderr + proc.stdout, proc.stderr
    proc = cli(hub, "module-identity", "create", "-d", "no-such-device", "-m", "m", ok=False)
    assert proc.returncode != 0 and "DeviceNotFound" in proc.stderr + proc.stdout, proc.stderr


def test_cli_invoke_module_method_answered(hub, rm):
    device_id = uid("d")
    rm.create_device_with_sas(device_id, "", "", "enabled")
    key = rm.create_module_with_sas(device_id, "svc", None, "", "").authentication.symmetric_key.primary_key
    client = module_client(hub, device_id, "svc", key)
    client.on_method_request_received = lambda r: client.send_method_response(
        MethodResponse.create_from_method_request(r, 201, {"echo": r.payload}))
    client.connect()
    try:
        def answered():
            proc = cli(hub, "invoke-module-method", "-d", device_id, "-m", "svc", "--method-name", "echo",
                       "--method-payload", '{"a": 1}', "--timeout", "10", ok=False)
            return json.loads(proc.stdout) if proc.returncode == 0 else None

        assert wait_for(answered, what="the module's answer") == {"payload": {"echo": {"a": 1}}, "status": 201}
    finally:
        client.shutdown()


def test_query_module_twins(hub, rm):
    from azure.iot.hub.models import QuerySpecification

    device_id = uid("q")
    rm.create_device_with_sas(device_id, "", "", "enabled")
    for m in ["qa", "qb", "qc"]:
        rm.create_module_with_sas(device_id, m, None, "", "")
    rm.update_module_twin(device_id, "qb", Twin(tags={"role": "gw"}))
    result = rm.query_iot_hub(QuerySpecification(query=f"SELECT * FROM devices.modules WHERE deviceId = '{device_id}'"))
    assert result.type == "twin"
    assert [(t.device_id, t.module_id) for t in result.items] == [(device_id, m) for m in ["qa", "qb", "qc"]]
    result = rm.query_iot_hub(QuerySpecification(query="SELECT * FROM devices.modules WHERE tags.role = 'gw'"))
    assert [t.module_id for t in result.items] == ["qb"]
    # Paged two at a time: every module once, in order.
    seen, token = [], None
    while True:
        page = rm.query_iot_hub(QuerySpecification(query=f"SELECT * FROM devices.modules WHERE deviceId = '{device_id}'"),
                                continuation_token=token, max_item_count=2)
        seen += [t.module_id for t in page.items]
        token = page.continuation_token
        if not token:
            break
    assert seen == ["qa", "qb", "qc"]
    raw = rm.query_iot_hub(QuerySpecification(query=f"SELECT moduleId FROM devices.modules WHERE moduleId = 'qc' AND deviceId = '{device_id}'"))
    assert raw.type == "raw" and [t.module_id for t in raw.items] == ["qc"]  # the SDK reads items as Twin
