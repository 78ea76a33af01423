"""IoT Plug and Play against real clients: a Python device (`azure-iot-device`) that announces its
model (`product_info="dtmi:…"`, sent as `model-id` in its MQTT username), the service SDK's
`DigitalTwinClient` (`azure-iot-hub`), and `ironhub hub digital-twin …`."""

from __future__ import annotations

import json
import time

import pytest
from azure.iot.device import IoTHubDeviceClient, Message, MethodResponse
from azure.iot.hub import DigitalTwinClient
from msrest.exceptions import HttpOperationError

from conftest import run_cli
from test_device import device_key, stored_events, wait_for

IRONHUB_ADDRESS = "127.0.0.50"
MODEL = "dtmi:com:example:TemperatureController;2"


def pnp_device(hub, device_id: str, key: str) -> IoTHubDeviceClient:
    cs = f"HostName={hub.hostname};DeviceId={device_id};SharedAccessKey={key}"
    return IoTHubDeviceClient.create_from_connection_string(
        cs, server_verification_cert=open(hub.ca_file).read(), product_info=MODEL
    )


def model_id(rm, device_id: str) -> str:
    """The twin's `modelId` (the SDK's `Twin` model of azure-iot-hub 2.7.0 drops it: read it raw)."""
    return rm.protocol.devices.get_twin(device_id, raw=True).response.json()["modelId"]


def digital_twins(hub) -> DigitalTwinClient:
    client = DigitalTwinClient.from_connection_string(hub.connection_string)
    client.protocol.config.connection.verify = hub.ca_file
    return client


def test_model_id_digital_twin_commands_and_telemetry(hub, rm):
    device_id = "thermo-1"
    key = device_key(rm, device_id)
    assert model_id(rm, device_id) == ""
    device = pnp_device(hub, device_id, key)
    device.connect()
    try:
        # The model the device announced is kept on its twin.
        assert model_id(rm, device_id) == MODEL

        device.patch_twin_reported_properties(
            {"serialNumber": "SN-1", "thermostat1": {"__t": "c", "maxTempSinceLastReboot": 33.5}}
        )
        dt = digital_twins(hub)
        twin = dt.get_digital_twin(device_id)
        assert twin["$dtId"] == device_id
        assert twin["$metadata"]["$model"] == MODEL
        assert twin["serialNumber"] == "SN-1"
        assert "lastUpdateTime" in twin["$metadata"]["serialNumber"]
        assert twin["thermostat1"]["maxTempSinceLastReboot"] == 33.5
        assert "__t" not in twin["thermostat1"]
        assert "maxTempSinceLastReboot" in twin["thermostat1"]["$metadata"]

        # A JSON Patch becomes a desired-properties patch, components marked as IoT Hub marks them.
        patches = []
        device.on_twin_desired_properties_patch_received = patches.append
        time.sleep(0.5)  # the SDK subscribes in the background
        dt.update_digital_twin(
            device_id,
            [
                {"op": "add", "path": "/targetTemperature", "value": 21},
                {"op": "add", "path": "/thermostat1/targetTemperature", "value": 42},
            ],
        )
        wait_for(lambda: patches, what="the desired patch")
        patch = patches[0]
        assert patch["targetTemperature"] == 21
        assert patch["thermostat1"] == {"__t": "c", "targetTemperature": 42}
        version = patch["$version"]
        # The device acknowledges as the PnP conventions say; the digital twin shows it.
        device.patch_twin_reported_properties(
            {"thermostat1": {"__t": "c", "targetTemperature": {"value": 42, "ac": 200, "av": version, "ad": "ok"}}}
        )
        twin = dt.get_digital_twin(device_id)
        assert twin["thermostat1"]["targetTemperature"] == 42
        meta = twin["thermostat1"]["$metadata"]["targetTemperature"]
        assert meta["desiredValue"] == 42 and meta["desiredVersion"] == version
        assert meta["ackCode"] == 200 and meta["ackVersion"] == version and meta["ackDescription"] == "ok"
        assert twin["$metadata"]["targetTemperature"]["desiredValue"] == 21
        assert rm.get_twin(device_id).properties.desired["thermostat1"]["targetTemperature"] == 42

        # A stale etag is refused and changes nothing.
        with pytest.raises(HttpOperationError) as e:
            dt.update_digital_twin(device_id, [{"op": "add", "path": "/targetTemperature", "value": 5}], etag='"stale"')
        assert e.value.response.status_code == 412
        assert rm.get_twin(device_id).properties.desired["targetTemperature"] == 21
        for bad in ([{"op": "move", "from": "/a", "path": "/b"}],
                    [{"op": "add", "path": "/not-a-dtdl-name", "value": 1}],
                    [{"op": "add", "path": "/thermostat1/limits", "value": [1, 2]}]):
            with pytest.raises(HttpOperationError) as e:
                dt.update_digital_twin(device_id, bad)
            assert e.value.response.status_code == 400
            assert e.value.response.headers["iothub-errorcode"] == "ArgumentInvalid"

        # Replacing a whole component (the `$metadata` marker) clears what it leaves out.
        dt.update_digital_twin(
            device_id, [{"op": "replace", "path": "/thermostat1", "value": {"alarmAt": 50, "$metadata": {}}}]
        )
        assert rm.get_twin(device_id).properties.desired["thermostat1"] == {"__t": "c", "alarmAt": 50}
        twin = dt.get_digital_twin(device_id)
        assert twin["thermostat1"]["$metadata"]["alarmAt"]["desiredValue"] == 50
        assert "desiredValue" not in twin["thermostat1"]["$metadata"]["targetTemperature"]

        # Commands are direct methods: `name` at the root, `component*name` in a component.
        calls = []

        def on_method(request):
            calls.append((request.name, request.payload))
            device.send_method_response(
                MethodResponse.create_from_method_request(request, 201, {"ran": request.name})
            )

        device.on_method_request_received = on_method
        time.sleep(0.5)
        assert dt.invoke_command(device_id, "reboot", {"delay": 1}) == {"ran": "reboot"}
        assert dt.invoke_component_command(
            device_id, "thermostat1", "getMaxMinReport", "2024-01-01T00:00:00Z", response_timeout_in_seconds=10
        ) == {"ran": "thermostat1*getMaxMinReport"}
        assert calls == [("reboot", {"delay": 1}), ("thermostat1*getMaxMinReport", "2024-01-01T00:00:00Z")]
        raw = dt.protocol.digital_twin.invoke_root_level_command(
            device_id, "reboot", {}, connect_timeout_in_seconds=5, response_timeout_in_seconds=10, raw=True
        )
        assert raw.headers["x-ms-command-statuscode"] == 201
        assert raw.headers["x-ms-request-id"]

        # Telemetry carries the model (`dt-dataschema`) and the component (`dt-subject`, `$.sub`).
        msg = Message('{"temperature": 20}', content_type="application/json", content_encoding="utf-8")
        msg.custom_properties["$.sub"] = "thermostat1"
        device.send_message(msg)
        [event] = stored_events(hub, device_id)
        assert event["systemProperties"]["dt-dataschema"] == MODEL
        assert event["systemProperties"]["dt-subject"] == "thermostat1"
        assert "$.sub" not in event["applicationProperties"]
        # `ironhub hub monitor-events` shows them as az does: the event's interface and component.
        out = run_cli("hub", "monitor-events", "-d", device_id, "--enqueued-time", "0", "--timeout", "2",
                      "--message-count", "1", "--data-dir", str(hub.data_dir), check=True)
        shown = json.loads(out.stdout)["event"]
        assert (shown["interface"], shown["component"]) == (MODEL, "thermostat1")
        assert shown["payload"] == {"temperature": 20}
    finally:
        device.shutdown()

    # The model stays on the twin after the device leaves; commands to it are DeviceNotOnline.
    wait_for(lambda: rm.get_device(device_id).connection_state == "Disconnected", what="Disconnected")
    assert model_id(rm, device_id) == MODEL
    with pytest.raises(HttpOperationError) as e:
        dt.invoke_command(device_id, "reboot", {})
    assert e.value.response.status_code == 404
    assert e.value.response.headers["iothub-errorcode"] == "DeviceNotOnline"
    with pytest.raises(HttpOperationError) as e:
        dt.get_digital_twin("nobody")
    assert e.value.response.status_code == 404


def test_cli_digital_twin(hub, rm):
    """`ironhub hub digital-twin show|update|invoke-command`, with az's flags."""
    device_id = "thermo-cli"
    key = device_key(rm, device_id)
    device = pnp_device(hub, device_id, key)
    device.connect()
    d = ["--data-dir", str(hub.data_dir)]
    try:
        patches = []
        device.on_twin_desired_properties_patch_received = patches.append
        device.on_method_request_received = lambda r: device.send_method_response(
            MethodResponse.create_from_method_request(r, 200, {"echo": r.payload, "name": r.name})
        )
        time.sleep(0.5)
        shown = json.loads(run_cli("hub", "digital-twin", "show", "-d", device_id, *d, check=True).stdout)
        assert shown["$dtId"] == device_id and shown["$metadata"]["$model"] == MODEL

        updated = json.loads(run_cli(
            "hub", "digital-twin", "update", "-d", device_id, *d,
            "--json-patch", '{"op": "add", "path": "/thermostat1", "value": {"targetTemperature": 30, "$metadata": {}}}',
            check=True,
        ).stdout)
        assert updated["thermostat1"]["$metadata"]["targetTemperature"]["desiredValue"] == 30
        wait_for(lambda: patches, what="the desired patch from the CLI")
        assert patches[0]["thermostat1"] == {"__t": "c", "targetTemperature": 30}
        stale = run_cli("hub", "digital-twin", "update", "-d", device_id, *d, "--etag", "bogus",
                        "--json-patch", '[{"op": "remove", "path": "/thermostat1"}]')
        assert stale.returncode != 0 and "PreconditionFailed" in stale.stderr

        out = run_cli("hub", "digital-twin", "invoke-command", "-d", device_id, "--cn", "getMaxMinReport",
                      "--component-path", "thermostat1", "--payload", '{"since": "yesterday"}', "--rto", "10", *d,
                      check=True)
        assert json.loads(out.stdout) == {
            "payload": {"echo": {"since": "yesterday"}, "name": "thermostat1*getMaxMinReport"},
            "status": "200",
        }
    finally:
        device.shutdown()


def test_node_sdks(hub, rm):
    """The Node.js SDKs: azure-iot-device with `modelId`, azure-iothub's DigitalTwinClient
    (`node/pnp.js`)."""
    import os
    import shutil
    import subprocess
    from pathlib import Path

    node_dir = Path(__file__).resolve().parent / "node"
    if shutil.which("node") is None or not (node_dir / "node_modules" / "azure-iothub").is_dir():
        pytest.fail("node or the Node SDKs are missing: run the suite through scripts/test", pytrace=False)
    device_id = "thermo-node"
    key = device_key(rm, device_id)
    env = dict(os.environ, NODE_EXTRA_CA_CERTS=hub.ca_file, IRONHUB_CONNECTION_STRING=hub.connection_string)
    proc = subprocess.run(
        ["node", "pnp.js", "--device-cs", f"HostName={hub.hostname};DeviceId={device_id};SharedAccessKey={key}",
         "--model", MODEL],
        cwd=node_dir, env=env, capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL,
    )
    assert proc.returncode == 0, f"{proc.stdout}\n{proc.stderr}"
    out = json.loads(proc.stdout)
    twin = out["digitalTwin"]
    assert twin["$dtId"] == device_id and twin["$metadata"]["$model"] == MODEL
    assert twin["serialNumber"] == "SN-node" and twin["thermostat1"]["maxTempSinceLastReboot"] == 40
    assert out["update"]["status"] == 202 and out["update"]["etag"]
    assert out["update"]["location"] == f"/digitaltwins/{device_id}"
    assert out["desiredPatch"]["thermostat1"] == {"__t": "c", "targetTemperature": 25}
    assert out["root"]["xMsCommandStatuscode"] == 202 and out["root"]["xMsRequestId"]
    assert out["root"]["body"] == {"ran": "reboot"}
    assert out["component"]["xMsCommandStatuscode"] == 202
    assert out["component"]["body"] == {"ran": "thermostat1*getMaxMinReport"}
    assert out["calls"] == [["reboot", {"delay": 2}], ["thermostat1*getMaxMinReport", "now"]]
    assert model_id(rm, device_id) == MODEL
