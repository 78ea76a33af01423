"""Automatic device management and IoT Edge deployments through the real clients: Python's
`IoTHubConfigurationManager` (azure-iot-hub), the `ironhub hub configuration` and
`ironhub edge` commands (az's names and flags), an Edge device managing its own modules with
its own SAS token as the IoT Edge runtime does, and the `$edgeAgent` module client
(`IoTHubModuleClient` over MQTT) receiving its deployment. Configurations are applied in the
background, as in IoT Hub, so tests wait for twins with a bounded timeout."""

from __future__ import annotations

import itertools
import json
import threading

import pytest
import requests
from azure.iot.device import IoTHubModuleClient
from azure.iot.hub import IoTHubConfigurationManager
from azure.iot.hub.models import Configuration, ConfigurationContent, ConfigurationMetrics, Twin
from msrest.exceptions import HttpOperationError

from conftest import assert_hub_error as assert_error, run_cli
from dps_helpers import sas, wait_for

IRONHUB_ADDRESS = "127.0.0.245"
API = "api-version=2021-04-12"
WAIT_S = 30

_counter = itertools.count(1)


def uid(prefix: str) -> str:
    return f"{prefix}-{next(_counter)}"


@pytest.fixture
def cm(hub):
    manager = IoTHubConfigurationManager.from_connection_string(hub.connection_string)
    manager.protocol.config.connection.verify = hub.ca_file
    return manager


def device_config(config_id: str, condition: str, content: dict, priority: int = 0,
                  metrics: dict | None = None) -> Configuration:
    return Configuration(
        id=config_id,
        schema_version="1.0",
        labels={"team": "ops"},
        content=ConfigurationContent(device_content=content),
        target_condition=condition,
        priority=priority,
        metrics=ConfigurationMetrics(queries=metrics or {}),
    )


def tag(rm, device_id: str, tags: dict) -> None:
    rm.update_twin(device_id, Twin(tags=tags), "*")


def desired(rm, device_id: str) -> dict:
    return rm.get_twin(device_id).properties.desired


def configurations(hub, device_id: str, module_id: str | None = None) -> dict:
    """The twin's `configurations`, read as JSON (the SDK's `Twin` model drops the field)."""
    path = f"/twins/{device_id}" + (f"/modules/{module_id}" if module_id else "")
    r = requests.get(f"https://{hub.address}{path}?{API}", headers={"Authorization": hub_token(hub)}, timeout=10)
    assert r.status_code == 200, r.text
    return r.json().get("configurations", {})


def cli(hub, *args: str):
    proc = run_cli(*args, "--login", hub.connection_string, "--cafile", hub.ca_file, check=True)
    return json.loads(proc.stdout) if proc.stdout.strip() else None


def test_configuration_crud_with_the_python_manager(cm):
    config_id = uid("crud")
    created = cm.create_configuration(device_config(
        config_id, "tags.env = 'none'", {"properties.desired.fw": {"version": "1.0"}}, priority=3,
        metrics={"upToDate": "SELECT deviceId FROM devices WHERE properties.reported.fw.version = '1.0'"}))
    assert created.id == config_id and created.priority == 3 and created.etag
    assert created.schema_version == "1.0" and created.labels == {"team": "ops"}
    assert created.content.device_content == {"properties.desired.fw": {"version": "1.0"}}
    assert created.created_time_utc and created.last_updated_time_utc
    assert created.system_metrics.results == {"targetedCount": 0, "appliedCount": 0}
    assert created.metrics.results == {"upToDate": 0}

    got = cm.get_configuration(config_id)
    assert (got.etag, got.target_condition) == (created.etag, "tags.env = 'none'")
    with pytest.raises(HttpOperationError) as e:
        cm.create_configuration(device_config(config_id, "", {"properties.desired.x": 1}))
    assert_error(e, 409, "ConfigurationAlreadyExists")

    got.priority = 7
    updated = cm.update_configuration(got, got.etag)
    assert updated.priority == 7 and updated.etag != created.etag
    assert updated.created_time_utc == created.created_time_utc
    with pytest.raises(HttpOperationError) as e:
        cm.update_configuration(got, created.etag)
    assert_error(e, 412, "PreconditionFailed")
    got.content = ConfigurationContent(device_content={"properties.desired.other": 1})
    with pytest.raises(HttpOperationError) as e:
        cm.update_configuration(got, "*")
    assert_error(e, 400, "ArgumentInvalid")

    second = uid("crud")
    cm.create_configuration(device_config(second, "", {"properties.desired.y": 2}))
    ids = [c.id for c in cm.get_configurations()]
    assert config_id in ids and second in ids
    assert len(cm.get_configurations(1)) == 1

    with pytest.raises(HttpOperationError) as e:
        cm.delete_configuration(config_id, created.etag)
    assert_error(e, 412, "PreconditionFailed")
    cm.delete_configuration(config_id)
    with pytest.raises(HttpOperationError) as e:
        cm.get_configuration(config_id)
    assert_error(e, 404, "ConfigurationNotFound")
    cm.delete_configuration(second, cm.get_configuration(second).etag)


@pytest.mark.parametrize("bad", [
    {"target_condition": "tags.env = ", "content": {"properties.desired.x": 1}},
    {"target_condition": "tags.env = 'a'", "content": {"tags.x": 1}},
    {"target_condition": "tags.env = 'a'", "content": {"properties.reported.x": 1}},
    {"target_condition": "tags.env = 'a'", "content": {"properties.desired.x": 1}, "priority": -1},
    {"target_condition": "tags.env = 'a'", "content": {"properties.desired.x": 1},
     "metrics": {"m": "SELECT FROM"}},
])
def test_invalid_configurations_are_refused_and_nothing_is_stored(cm, bad):
    config_id = uid("bad")
    with pytest.raises(HttpOperationError) as e:
        cm.create_configuration(device_config(config_id, bad["target_condition"], bad["content"],
                                              bad.get("priority", 0), bad.get("metrics")))
    assert_error(e, 400, "ArgumentInvalid")
    assert config_id not in [c.id for c in cm.get_configurations()]


def test_a_configuration_reaches_exactly_the_targeted_twins(hub, rm, cm):
    site = uid("site")
    inside = [uid("in"), uid("in")]
    outside = uid("out")
    for d in [*inside, outside]:
        rm.create_device_with_sas(d, "", "", "enabled")
    for d in inside:
        tag(rm, d, {"site": site})
    tag(rm, outside, {"site": "elsewhere"})
    config_id = uid("fw")
    cm.create_configuration(device_config(
        config_id, f"tags.site = '{site}'", {"properties.desired.fw": {"version": "2.0"}},
        metrics={"targetedHere": f"SELECT deviceId FROM devices WHERE tags.site = '{site}'"}))

    for d in inside:
        wait_for(lambda d=d: desired(rm, d).get("fw") == {"version": "2.0"}, WAIT_S, f"{d} configured")
    assert configurations(hub, inside[0])[config_id] == {"status": "Applied"}
    assert "fw" not in desired(rm, outside)
    assert config_id not in configurations(hub, outside)

    got = cm.get_configuration(config_id)
    assert got.system_metrics.results == {"targetedCount": 2, "appliedCount": 2}
    assert got.metrics.results == {"targetedHere": 2}
    applied = cli(hub, "hub", "configuration", "show-metric", "--config-id", config_id,
                  "--metric-id", "appliedCount", "--metric-type", "system")
    assert sorted(r["deviceId"] for r in applied["result"]) == sorted(inside)

    # A tag change moves a device out of the target and another in.
    tag(rm, inside[1], {"site": "moved"})
    tag(rm, outside, {"site": site})
    wait_for(lambda: desired(rm, outside).get("fw") == {"version": "2.0"}, WAIT_S, "the new device configured")
    wait_for(lambda: config_id not in configurations(hub, inside[1]), WAIT_S,
             "the moved device no longer targeted")
    assert desired(rm, inside[1]).get("fw") == {"version": "2.0"}, "what was written stays"
    got = cm.get_configuration(config_id)
    assert got.system_metrics.results == {"targetedCount": 2, "appliedCount": 2}
    cm.delete_configuration(config_id)
    wait_for(lambda: config_id not in configurations(hub, outside), WAIT_S, "the twin forgets it")


def test_the_highest_priority_wins_a_conflict(hub, rm, cm):
    device_id, site = uid("prio"), uid("site")
    rm.create_device_with_sas(device_id, "", "", "enabled")
    tag(rm, device_id, {"site": site})
    low, high = uid("low"), uid("high")
    cm.create_configuration(device_config(low, f"tags.site = '{site}'",
                                          {"properties.desired.mode": "low", "properties.desired.extra": 1},
                                          priority=1))
    cm.create_configuration(device_config(high, f"tags.site = '{site}'",
                                          {"properties.desired.mode": "high"}, priority=10))
    wait_for(lambda: desired(rm, device_id).get("mode") == "high" and desired(rm, device_id).get("extra") == 1,
             WAIT_S, "both configurations applied")
    statuses = configurations(hub, device_id)
    assert statuses[high]["status"] == "Applied" and statuses[low]["status"] == "Applied"
    # With the winner gone, its path goes to the next one.
    cm.delete_configuration(high)
    wait_for(lambda: desired(rm, device_id).get("mode") == "low", WAIT_S, "the lower priority takes over")
    cm.delete_configuration(low)



def test_a_module_configuration_reaches_the_targeted_module_twins(hub, rm, cm):
    device_id, role = uid("host"), uid("role")
    rm.create_device_with_sas(device_id, "", "", "enabled")
    for module_id in ["probe", "other"]:
        rm.create_module_with_sas(device_id, module_id, None, "", "")
    rm.update_module_twin(device_id, "probe", Twin(tags={"role": role}), "*")
    config_id = uid("modcfg")
    cm.create_configuration(Configuration(
        id=config_id, content=ConfigurationContent(module_content={"properties.desired.rate": 5}),
        target_condition=f"FROM devices.modules WHERE tags.role = '{role}'", priority=1))
    wait_for(lambda: rm.get_module_twin(device_id, "probe").properties.desired.get("rate") == 5, WAIT_S,
             "the module configured")
    assert "rate" not in rm.get_module_twin(device_id, "other").properties.desired
    assert configurations(hub, device_id, "probe")[config_id] == {"status": "Applied"}
    got = cm.get_configuration(config_id)
    assert got.system_metrics.results == {"targetedCount": 1, "appliedCount": 1}
    # A module configuration's condition must name the modules collection.
    with pytest.raises(HttpOperationError) as e:
        cm.create_configuration(Configuration(
            id=uid("modcfg"), content=ConfigurationContent(module_content={"properties.desired.rate": 1}),
            target_condition=f"tags.role = '{role}'"))
    assert_error(e, 400, "ArgumentInvalid")
    cm.delete_configuration(config_id)

MANIFEST = {
    "modulesContent": {
        "$edgeAgent": {"properties.desired": {
            "schemaVersion": "1.1",
            "runtime": {"type": "docker", "settings": {"minDockerVersion": "v1.25"}},
            "systemModules": {
                "edgeAgent": {"type": "docker", "settings": {"image": "mcr.microsoft.com/azureiotedge-agent:1.4"}},
                "edgeHub": {"type": "docker", "status": "running", "restartPolicy": "always",
                            "settings": {"image": "mcr.microsoft.com/azureiotedge-hub:1.4"}}},
            "modules": {}}},
        "$edgeHub": {"properties.desired": {
            "schemaVersion": "1.1", "routes": {"upstream": "FROM /messages/* INTO $upstream"},
            "storeAndForwardConfiguration": {"timeToLiveSecs": 7200}}},
    }
}


def device_token(hub, device_id: str, key: str) -> dict:
    return {"Authorization": sas(f"{hub.hostname}/devices/{device_id}", key)}


def test_an_edge_device_gets_its_system_modules_and_manages_its_own(hub, rm):
    edge_id, other_id = uid("edge"), uid("plain")
    key = rm.create_device_with_sas(edge_id, "", "", "enabled", iot_edge=True).authentication.symmetric_key.primary_key
    other_key = rm.create_device_with_sas(other_id, "", "", "enabled").authentication.symmetric_key.primary_key
    modules = {m.module_id: m for m in rm.get_modules(edge_id)}
    assert set(modules) == {"$edgeAgent", "$edgeHub"}
    assert modules["$edgeAgent"].authentication.symmetric_key.primary_key
    assert rm.get_module_twin(edge_id, "$edgeAgent").module_id == "$edgeAgent"
    assert rm.get_modules(other_id) == []

    base = f"https://{hub.address}/devices"
    own = device_token(hub, edge_id, key)
    listed = requests.get(f"{base}/{edge_id}/modules?{API}", headers=own, timeout=10)
    assert listed.status_code == 200, listed.text
    assert {m["moduleId"] for m in listed.json()} == {"$edgeAgent", "$edgeHub"}
    made = requests.put(f"{base}/{edge_id}/modules/sensor?{API}", headers=own, timeout=10,
                        json={"moduleId": "sensor", "deviceId": edge_id, "managedBy": "iotEdge"})
    assert made.status_code == 200, made.text
    assert requests.get(f"{base}/{edge_id}/modules/sensor?{API}", headers=own, timeout=10).json()["managedBy"] == "iotEdge"

    # Another device's modules, with this device's token or the other's: refused, nothing made.
    for path, headers in [(f"{other_id}/modules/x", own), (f"{edge_id}/modules/y", device_token(hub, other_id, other_key))]:
        refused = requests.put(f"{base}/{path}?{API}", headers=headers, timeout=10, json={"moduleId": path.rsplit("/", 1)[1]})
        assert refused.status_code == 401, refused.text
        assert refused.headers.get("iothub-errorcode") == "IotHubUnauthorizedAccess"
    assert requests.get(f"{base}/{other_id}/modules?{API}", headers=own, timeout=10).status_code == 401
    assert [m.module_id for m in rm.get_modules(other_id)] == []
    assert "y" not in {m.module_id for m in rm.get_modules(edge_id)}
    # A plain device may not manage even its own modules.
    plain = requests.get(f"{base}/{other_id}/modules?{API}", headers=device_token(hub, other_id, other_key), timeout=10)
    assert plain.status_code == 401

    deleted = requests.delete(f"{base}/{edge_id}/modules/sensor?{API}", headers={**own, "If-Match": "*"}, timeout=10)
    assert deleted.status_code == 204, deleted.text


def agent_client(hub, rm, edge_id: str, module_id: str = "$edgeAgent") -> IoTHubModuleClient:
    """A module client (MQTT) of the Edge device's `module_id`, with that module's key."""
    key = rm.get_module(edge_id, module_id).authentication.symmetric_key.primary_key
    cs = f"HostName={hub.hostname};DeviceId={edge_id};ModuleId={module_id};SharedAccessKey={key}"
    return IoTHubModuleClient.create_from_connection_string(cs, server_verification_cert=open(hub.ca_file).read())


def listening_agent(hub, rm, edge_id: str):
    """`agent_client`, connected: the client, the list of desired patches it receives, and an
    event set on the first."""
    agent = agent_client(hub, rm, edge_id)
    patches: list = []
    got_patch = threading.Event()

    def on_patch(patch):
        patches.append(patch)
        got_patch.set()

    agent.on_twin_desired_properties_patch_received = on_patch
    agent.connect()
    return agent, patches, got_patch


def test_set_modules_and_a_layered_deployment_reach_the_edge_agent(hub, rm, tmp_path):
    edge_id, fleet = uid("edge"), uid("fleet")
    rm.create_device_with_sas(edge_id, "", "", "enabled", iot_edge=True)
    manifest = tmp_path / "manifest.json"
    manifest.write_text(json.dumps(MANIFEST))
    cli(hub, "edge", "set-modules", "--device-id", edge_id, "--content", str(manifest))
    assert [m.module_id for m in rm.get_modules(edge_id)] == ["$edgeAgent", "$edgeHub"], "set-modules creates nothing"
    assert rm.get_module_twin(edge_id, "$edgeHub").properties.desired["routes"] == {
        "upstream": "FROM /messages/* INTO $upstream"}

    agent, patches, got_patch = listening_agent(hub, rm, edge_id)
    try:
        twin = agent.get_twin()
        assert twin["desired"]["schemaVersion"] == "1.1"
        assert twin["desired"]["systemModules"] == MANIFEST["modulesContent"]["$edgeAgent"]["properties.desired"]["systemModules"]
        assert twin["desired"]["modules"] == {}

        # A base deployment and a layered one adding a module, targeting the device by tag.
        tag(rm, edge_id, {"fleet": fleet})
        base_id, layer_id = uid("base"), uid("layer")
        cli(hub, "edge", "deployment", "create", "--deployment-id", base_id, "--content", str(manifest),
            "--target-condition", f"tags.fleet = '{fleet}'", "--priority", "5")
        sensor = {"version": "1.0", "type": "docker", "status": "running", "restartPolicy": "always",
                  "settings": {"image": "mcr.microsoft.com/azureiotedge-simulated-temperature-sensor:1.4"}}
        layer = {"modulesContent": {"$edgeAgent": {"properties.desired.modules.sensor": sensor}}}
        cli(hub, "edge", "deployment", "create", "--deployment-id", layer_id, "--content", json.dumps(layer),
            "--target-condition", f"tags.fleet = '{fleet}'", "--priority", "9", "--layered")
        assert got_patch.wait(WAIT_S), "the agent received no desired patch"
        wait_for(lambda: any(p.get("modules", {}).get("sensor") == sensor for p in patches), WAIT_S,
                 "the layered module in a patch")
        twin = agent.get_twin()
        assert twin["desired"]["modules"] == {"sensor": sensor}
        assert twin["desired"]["systemModules"]["edgeAgent"]["type"] == "docker", "the base stays under the layer"

        statuses = configurations(hub, edge_id, "$edgeAgent")
        assert statuses[base_id]["status"] == "Applied" and statuses[layer_id]["status"] == "Applied"
        shown = cli(hub, "edge", "deployment", "show", "--deployment-id", layer_id)
        assert shown["systemMetrics"]["results"]["targetedCount"] == 1
        assert shown["systemMetrics"]["results"]["appliedCount"] == 1
        listed = cli(hub, "edge", "deployment", "list")
        assert {base_id, layer_id} <= {d["id"] for d in listed}
        assert all("modulesContent" in d["content"] for d in listed)
        metric = cli(hub, "edge", "deployment", "show-metric", "--deployment-id", base_id,
                     "--metric-id", "appliedCount", "--metric-type", "system")
        assert [r["deviceId"] for r in metric["result"]] == [edge_id]
        cli(hub, "edge", "deployment", "delete", "--deployment-id", layer_id)
        cli(hub, "edge", "deployment", "delete", "--deployment-id", base_id)
    finally:
        agent.shutdown()


def test_bad_edge_input_is_refused_and_changes_nothing(hub, rm):
    edge_id, plain_id = uid("edge"), uid("plain")
    rm.create_device_with_sas(edge_id, "", "", "enabled", iot_edge=True)
    rm.create_device_with_sas(plain_id, "", "", "enabled")
    before = rm.get_module_twin(edge_id, "$edgeAgent").properties.desired
    for device_id, content in [
        (plain_id, MANIFEST),
        (edge_id, {"modulesContent": {"$edgeAgent": {"properties.desired": {}}}}),
        (edge_id, {"modulesContent": {"$edgeAgent": {"properties.desired.modules.x": {}},
                                      "$edgeHub": {"properties.desired": {}}}}),
        (edge_id, {"deviceContent": {"properties.desired.x": 1}}),
        ("nobody-" + edge_id, MANIFEST),
    ]:
        r = requests.post(f"https://{hub.address}/devices/{device_id}/applyConfigurationContent?{API}",
                          headers={"Authorization": hub_token(hub)}, json=content, timeout=10)
        assert r.status_code in (400, 404), r.text
        assert r.headers.get("iothub-errorcode") in ("ArgumentInvalid", "DeviceNotFound"), r.text
    assert rm.get_module_twin(edge_id, "$edgeAgent").properties.desired == before
    proc = run_cli("edge", "deployment", "create", "--deployment-id", "Bad Id", "--content", json.dumps(MANIFEST),
                   "--login", hub.connection_string, "--cafile", hub.ca_file)
    assert proc.returncode != 0 and "ArgumentInvalid" in proc.stderr + proc.stdout
    proc = run_cli("edge", "deployment", "create", "--deployment-id", uid("bad"), "--content", json.dumps(MANIFEST),
                   "--target-condition", "tags.x = ", "--login", hub.connection_string, "--cafile", hub.ca_file)
    assert proc.returncode != 0


def hub_token(hub) -> str:
    parts = hub.connection_string_parts()
    return sas(hub.hostname, parts["SharedAccessKey"], parts["SharedAccessKeyName"])


def test_acknowledged_configurations_survive_kill_9(hub, rm, cm):
    device_id, site = uid("durable"), uid("site")
    rm.create_device_with_sas(device_id, "", "", "enabled")
    tag(rm, device_id, {"site": site})
    config_id = uid("durable")
    created = cm.create_configuration(device_config(config_id, f"tags.site = '{site}'",
                                                    {"properties.desired.durable": True}))
    hub.kill9()
    hub.restart()
    got = cm.get_configuration(config_id)
    assert (got.etag, got.target_condition) == (created.etag, f"tags.site = '{site}'")
    wait_for(lambda: desired(rm, device_id).get("durable") is True, WAIT_S, "applied after the restart")
    assert configurations(hub, device_id)[config_id] == {"status": "Applied"}
