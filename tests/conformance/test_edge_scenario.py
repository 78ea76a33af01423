"""One IoT Edge device's life, end to end, with the calls the IoT Edge runtime makes (Azure
docs, "Provision an IoT Edge device at scale with symmetric keys", "Deploy IoT Edge modules at
scale", "Authenticate a downstream device to Azure IoT Hub"):

1. the device registers through DPS with the device SDK's `ProvisioningDeviceClient` against an
   enrollment with `capabilities.iotEdge` (and, in its own test, over HTTPS exactly as
   aziot-identityd's DPS client does), and the hub makes it an Edge device with its
   `$edgeAgent` and `$edgeHub` modules;
2. with the SAS key it provisioned with, signed as aziot-identityd signs, it creates, reads,
   updates and deletes its own modules over REST (`managedBy: iotEdge`, api-version
   2017-11-08-preview);
3. an Edge deployment made with the service SDK's `IoTHubConfigurationManager` reaches the
   `$edgeAgent` module twin, read by `IoTHubModuleClient` with the module's key; a layered
   deployment arrives as a desired patch; the agent's reported `lastDesiredVersion` /
   `lastDesiredStatus` make the deployment's `reportedSuccessfulCount`/`reportedFailedCount`;
4. `$edgeHub`, connected as itself, also opens an MQTT connection for a child device in the
   Edge device's scope; the Event Hubs SDK reads both messages with their senders.

The refusals (another device's modules, another module's topics and login, a child outside
the scope or in another Edge device's) are checked along the way, and the device and its
modules survive `kill -9`.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
import urllib.parse

import pytest
import requests
from azure.iot.device import Message, ProvisioningDeviceClient
from azure.iot.hub.models import Configuration, ConfigurationContent
from paho.mqtt import client as paho

from conftest import test_address
from dps_helpers import dps_info, new_key, sas, wait_for
from eventhub_helpers import receive_events
from test_amqp_module_inputs import edge_device
from test_configurations import (  # noqa: F401 (cm: the configuration manager fixture)
    API, MANIFEST, agent_client, cli, cm, configurations, device_token, listening_agent, uid)
from test_device import mqtt_connack
from test_dps import dps  # noqa: F401 (the DPS service client fixture)
from test_edge_on_behalf_of import Child, child_of, edge_hub_token
from test_eventhub import consumer
from test_modules import connack

IRONHUB_ADDRESS = test_address("127.0.0.72")
IDENTITYD_API = "api-version=2017-11-08-preview"
WAIT_S = 20


@pytest.fixture(scope="module")
def edge(hub, dps):
    """An Edge device provisioned through DPS: its id, its key and its fleet tag."""
    rid, key, fleet = uid("edge-scn"), new_key(), uid("fleet")
    dps.enrollment.create_or_update(id=rid, enrollment={
        "registrationId": rid,
        "attestation": {"type": "symmetricKey", "symmetricKey": {"primaryKey": key, "secondaryKey": new_key()}},
        "capabilities": {"iotEdge": True},
        "initialTwin": {"tags": {"fleet": fleet}},
    })
    client = ProvisioningDeviceClient.create_from_symmetric_key(
        provisioning_host=hub.address, registration_id=rid, id_scope=dps_info(hub)["idScope"],
        symmetric_key=key, server_verification_cert=open(hub.ca_file).read())
    result = client.register()
    assert result.status == "assigned", result
    assert result.registration_state.assigned_hub == hub.hostname
    return {"id": result.registration_state.device_id, "rid": rid, "key": key, "fleet": fleet}


def modules_url(hub, device_id: str, module_id: str = "") -> str:
    return f"https://{hub.address}/devices/{device_id}/modules" + (f"/{module_id}" if module_id else "") + f"?{API}"


def test_dps_makes_an_edge_device_with_its_system_modules(hub, rm, edge):
    device = rm.get_device(edge["id"])
    assert device.capabilities.iot_edge is True
    assert device.authentication.symmetric_key.primary_key == edge["key"]
    assert device.device_scope, "an Edge device has a scope for its children"
    assert {m.module_id for m in rm.get_modules(edge["id"])} == {"$edgeAgent", "$edgeHub"}
    assert rm.get_twin(edge["id"]).tags == {"fleet": edge["fleet"]}


def identityd_token(audience: str, key: str) -> str:
    """A SAS token as aziot-identityd makes it (`aziot-cloud-client-async-common`): the audience
    lowercased and percent-encoded, `sig` and `se` form-encoded, 30 seconds of validity, no `skn`."""
    sr = urllib.parse.quote(audience.lower(), safe="")
    se = str(int(time.time()) + 30)
    sig = base64.b64encode(hmac.new(base64.b64decode(key), f"{sr}\n{se}".encode(), hashlib.sha256).digest()).decode()
    return f"SharedAccessSignature sr={sr}&" + urllib.parse.urlencode([("sig", sig), ("se", se)])


def identityd(method: str, url: str, token: dict, body=None, if_match: bool = False):
    """A module call as aziot-identityd makes it (Azure/iot-identity-service,
    `aziot-hub-client-async`): api-version 2017-11-08-preview, a device SAS token, JSON."""
    headers = {**token, **({"If-Match": "*"} if if_match else {})}
    return requests.request(method, url.replace(API, IDENTITYD_API), headers=headers, json=body, timeout=10)


def edge_module(device_id: str, module_id: str) -> dict:
    """The body aziot-identityd sends to create (or update) an Edge module."""
    return {"moduleId": module_id, "managedBy": "iotEdge", "deviceId": device_id, "authentication": {"type": "sas"}}


def test_the_edge_device_manages_its_own_modules_with_its_own_key(hub, rm, edge):
    own = {"Authorization": identityd_token(f"{hub.hostname}/devices/{edge['id']}", edge["key"])}
    made = identityd("PUT", modules_url(hub, edge["id"], "sensor"), own, edge_module(edge["id"], "sensor"))
    assert made.status_code == 200, made.text
    assert made.headers["content-type"].startswith("application/json")
    keys = made.json()["authentication"]["symmetricKey"]
    assert keys["primaryKey"] and keys["secondaryKey"], "the hub generates the module's keys"
    got = identityd("GET", modules_url(hub, edge["id"], "sensor"), own)
    assert got.status_code == 200, got.text
    assert (got.json()["moduleId"], got.json()["managedBy"]) == ("sensor", "iotEdge")
    assert got.json()["generationId"]
    listed = identityd("GET", modules_url(hub, edge["id"]), own)
    assert {m["moduleId"] for m in listed.json()} == {"$edgeAgent", "$edgeHub", "sensor"}
    # Its update (If-Match: *) keeps the module; its delete answers 204.
    updated = identityd("PUT", modules_url(hub, edge["id"], "sensor"), own, edge_module(edge["id"], "sensor"),
                        if_match=True)
    assert updated.status_code == 200, updated.text
    assert updated.json()["generationId"] == got.json()["generationId"]
    identityd("PUT", modules_url(hub, edge["id"], "gone"), own, edge_module(edge["id"], "gone"))
    deleted = identityd("DELETE", modules_url(hub, edge["id"], "gone"), own, if_match=True)
    assert deleted.status_code == 204, deleted.text
    assert "gone" not in {m.module_id for m in rm.get_modules(edge["id"])}

    # Another device's modules with the Edge device's token: 401, nothing made.
    other = uid("plain")
    rm.create_device_with_sas(other, "", "", "enabled")
    refused = identityd("PUT", modules_url(hub, other, "x"), own, edge_module(other, "x"))
    assert refused.status_code == 401, refused.text
    assert refused.headers.get("iothub-errorcode") == "IotHubUnauthorizedAccess"
    assert refused.json()["Message"], "aziot-identityd reads the error's Message"
    assert identityd("GET", modules_url(hub, other), own).status_code == 401
    assert identityd("DELETE", modules_url(hub, edge["id"], "sensor"), device_token(hub, other, rm.get_device(
        other).authentication.symmetric_key.primary_key), if_match=True).status_code == 401
    assert rm.get_modules(other) == []
    assert rm.get_module(edge["id"], "sensor").module_id == "sensor"
    # A token signed with another key for the Edge device's own resource: 401.
    forged = device_token(hub, edge["id"], new_key())
    assert identityd("GET", modules_url(hub, edge["id"]), forged).status_code == 401


def test_identityd_provisions_an_edge_device_over_https(hub, dps, rm):
    """aziot-identityd's DPS client (`aziot-dps-client-async`): PUT register, then GET the
    operation until it is no longer `assigning`, api-version 2018-11-01, its own SAS token."""
    rid, key = uid("edge-https"), new_key()
    dps.enrollment.create_or_update(id=rid, enrollment={
        "registrationId": rid, "capabilities": {"iotEdge": True},
        "attestation": {"type": "symmetricKey", "symmetricKey": {"primaryKey": key, "secondaryKey": new_key()}}})
    scope = dps_info(hub)["idScope"]
    base = f"https://{hub.address}/{scope}/registrations/{rid}"

    def call(method: str, path: str, body=None):
        auth = {"Authorization": identityd_token(f"{scope}/registrations/{rid}", key)}
        r = requests.request(method, f"{base}{path}?api-version=2018-11-01", headers=auth, json=body, timeout=10)
        assert r.status_code in (200, 202), r.text
        assert r.headers["content-type"].startswith("application/json")
        return r.json()

    operation = call("PUT", "/register", {"registrationId": rid})

    def finished():
        status = call("GET", f"/operations/{operation['operationId']}")
        return None if status["status"] == "assigning" else status

    done = wait_for(finished, WAIT_S, "the assignment")
    assert done["status"] == "assigned", done
    state = done["registrationState"]
    assert (state["assignedHub"], state["deviceId"]) == (hub.hostname, rid)
    assert rm.get_device(rid).capabilities.iot_edge is True
    # Its first hub call: the modules the Edge runtime is to manage.
    own = {"Authorization": identityd_token(f"{state['assignedHub']}/devices/{rid}", key)}
    listed = identityd("GET", modules_url(hub, rid), own)
    assert listed.status_code == 200, listed.text
    assert {m["moduleId"] for m in listed.json()} == {"$edgeAgent", "$edgeHub"}
    # A wrong key is refused with a JSON error identityd can read.
    wrong = {"Authorization": identityd_token(f"{scope}/registrations/{rid}", new_key())}
    refused = requests.put(f"{base}/register?api-version=2018-11-01", headers=wrong,
                           json={"registrationId": rid}, timeout=10)
    assert refused.status_code == 401, refused.text
    assert refused.json().get("message") or refused.json().get("Message"), refused.text


def edge_deployment(deployment_id: str, condition: str, modules_content: dict, priority: int) -> Configuration:
    return Configuration(id=deployment_id, content=ConfigurationContent(modules_content=modules_content),
                         target_condition=condition, priority=priority)


def counts(cm, deployment_id: str) -> tuple:
    """A deployment's (`reportedSuccessfulCount`, `reportedFailedCount`) system metrics."""
    results = cm.get_configuration(deployment_id).system_metrics.results
    return results.get("reportedSuccessfulCount"), results.get("reportedFailedCount")


def test_a_deployment_reaches_the_edge_agent_and_its_report_counts(hub, rm, cm, edge):
    condition = f"tags.fleet = '{edge['fleet']}'"
    base_id, layer_id = uid("base"), uid("layer")
    cm.create_configuration(edge_deployment(base_id, condition, MANIFEST["modulesContent"], 5))
    wait_for(lambda: base_id in configurations(hub, edge["id"], "$edgeAgent"), WAIT_S, "the deployment applied")

    agent, patches, got_patch = listening_agent(hub, rm, edge["id"])
    try:
        twin = agent.get_twin()
        wanted = MANIFEST["modulesContent"]["$edgeAgent"]["properties.desired"]
        assert twin["desired"]["systemModules"] == wanted["systemModules"]
        assert twin["desired"]["runtime"] == wanted["runtime"]
        assert rm.get_module_twin(edge["id"], "$edgeHub").properties.desired["routes"] == {
            "upstream": "FROM /messages/* INTO $upstream"}

        # A layered deployment adds a module: the agent gets it as a desired patch.
        sensor = {"version": "1.0", "type": "docker", "status": "running", "restartPolicy": "always",
                  "settings": {"image": "mcr.microsoft.com/azureiotedge-simulated-temperature-sensor:1.4"}}
        cm.create_configuration(edge_deployment(
            layer_id, condition, {"$edgeAgent": {"properties.desired.modules.sensor": sensor}}, 9))
        assert got_patch.wait(WAIT_S), "the agent received no desired patch"
        wait_for(lambda: any(p.get("modules", {}).get("sensor") == sensor for p in patches), WAIT_S,
                 "the layered module in a patch")
        twin = agent.get_twin()
        assert twin["desired"]["modules"] == {"sensor": sensor}

        # The agent reports what it did with the desired version, as edgeAgent does, and IoT
        # Hub counts it: a failure first, then a success.
        version = twin["desired"]["$version"]
        for code, successful, failed in [(400, 0, 1), (200, 1, 0)]:
            agent.patch_twin_reported_properties({
                "schemaVersion": "1.0", "lastDesiredVersion": version,
                "lastDesiredStatus": {"code": code, "description": ""},
                "modules": {"sensor": {"runtimeStatus": "running" if code == 200 else "failed"}},
            })
            reported = rm.get_module_twin(edge["id"], "$edgeAgent").properties.reported
            assert (reported["lastDesiredVersion"], reported["lastDesiredStatus"]["code"]) == (version, code)
            for deployment_id in (base_id, layer_id):
                wait_for(lambda d=deployment_id: counts(cm, d) == (successful, failed), WAIT_S,
                         f"{deployment_id} counting the report {code}")
                results = cm.get_configuration(deployment_id).system_metrics.results
                assert results["targetedCount"] == 1 and results["appliedCount"] == 1, results
        # The devices behind the count, as `az iot edge deployment show-metric` lists them.
        shown = cli(hub, "edge", "deployment", "show-metric", "--deployment-id", base_id,
                    "--metric-id", "reportedSuccessfulCount", "--metric-type", "system")
        assert [r["deviceId"] for r in shown["result"]] == [edge["id"]], shown

        # The layer deleted: its module leaves the agent's twin (the patch names it `null`, as a
        # merge patch must), and the agent gets a new desired version, which its last report
        # does not match, until it reports that one.
        cm.delete_configuration(layer_id)
        wait_for(lambda: layer_id not in configurations(hub, edge["id"], "$edgeAgent"), WAIT_S,
                 "the layer no longer on the agent's twin")
        wait_for(lambda: any(p.get("$version", 0) > version for p in patches), WAIT_S, "a newer desired version")
        removal = next(p for p in patches if p.get("$version", 0) > version)
        assert removal["modules"] == {"sensor": None}, removal
        twin = agent.get_twin()
        assert "sensor" not in twin["desired"].get("modules", {}), twin["desired"]
        newer = twin["desired"]["$version"]
        wait_for(lambda: counts(cm, base_id) == (0, 0), WAIT_S, "the stale report no longer counted")
        agent.patch_twin_reported_properties({"lastDesiredVersion": newer,
                                              "lastDesiredStatus": {"code": 200, "description": ""}})
        wait_for(lambda: counts(cm, base_id) == (1, 0), WAIT_S, "the new report counted")
    finally:
        agent.shutdown()
        for deployment_id in (layer_id, base_id):
            if deployment_id in {c.id for c in cm.get_configurations()}:
                cm.delete_configuration(deployment_id)


def test_a_module_token_is_refused_on_another_module_s_topics(hub, rm, edge):
    key = rm.get_module(edge["id"], "$edgeAgent").authentication.symmetric_key.primary_key
    token = sas(f"{hub.hostname}/devices/{edge['id']}/modules/$edgeAgent", key)
    user = f"{hub.hostname}/{edge['id']}/$edgeAgent/?{API}"
    out = connack(hub, f"{edge['id']}/$edgeAgent", user, token,
                  publish_to=f"devices/{edge['id']}/modules/$edgeHub/messages/events/")
    assert out["rc"] == 0 and out["closed"], out
    # Nor does it subscribe to `$edgeHub`'s inputs: refused in the SUBACK, or disconnected.
    agent = Child(hub, f"{edge['id']}/$edgeAgent", token)
    try:
        granted = agent.subscribe(f"devices/{edge['id']}/modules/$edgeHub/inputs/#")
        assert granted == [128] or agent.gone.wait(WAIT_S), granted
    finally:
        agent.close()
    # Nor does it log in as `$edgeHub`.
    hub_user = f"{hub.hostname}/{edge['id']}/$edgeHub/?{API}"
    assert connack(hub, f"{edge['id']}/$edgeHub", hub_user, token)["rc"] == 5


def test_edge_hub_sends_for_a_child_in_its_scope(hub, rm, edge):
    child_id, stranger_id = uid("scn-child"), uid("scn-stranger")
    rm.create_device_with_sas(child_id, None, None, "enabled")
    child = rm.get_device(child_id)
    scope = rm.get_device(edge["id"]).device_scope
    child.device_scope, child.parent_scopes = scope, [scope]
    rm.protocol.devices.create_or_update_identity(child_id, child, "*")
    assert rm.get_device(child_id).parent_scopes == [scope]
    rm.create_device_with_sas(stranger_id, None, None, "enabled")

    # edgeHub keeps its own module connection beside the ones it opens for its children.
    edge_hub = agent_client(hub, rm, edge["id"], "$edgeHub")
    edge_hub.connect()
    password = edge_hub_token(hub, rm, edge["id"])
    text = f"temperature from {child_id}"
    connection = Child(hub, child_id, password)
    try:
        connection.publish(f"devices/{child_id}/messages/events/", text.encode())
        edge_hub.send_message(Message(f"edgeHub of {edge['id']}"))
        edge_hub.patch_twin_reported_properties({"clients": {child_id: {"status": "Connected"}}})
    finally:
        connection.close()
        edge_hub.shutdown()
    events = receive_events(
        consumer(hub), 2, where=lambda e: e.system_properties.get(b"iothub-connection-device-id") in (
            child_id.encode(), edge["id"].encode()), wait_s=WAIT_S, starting_position="-1")
    by_sender = {(e.system_properties[b"iothub-connection-device-id"].decode(),
                  e.system_properties.get(b"iothub-connection-module-id", b"").decode()): e.body_as_str() for e in events}
    assert by_sender == {(child_id, ""): text, (edge["id"], "$edgeHub"): f"edgeHub of {edge['id']}"}, by_sender
    reported = rm.get_module_twin(edge["id"], "$edgeHub").properties.reported
    assert reported["clients"] == {child_id: {"status": "Connected"}}

    # A device outside the Edge device's scope, or in another Edge device's, is refused with
    # the same token.
    other_edge, other_child = uid("scn-other-edge"), uid("scn-other-child")
    edge_device(hub, other_edge, {})
    child_of(rm, other_edge, other_child)
    for device_id in (stranger_id, other_child):
        rc = mqtt_connack(hub, paho, device_id, f"{hub.hostname}/{device_id}/?{API}", password)
        assert rc == 5, (device_id, rc)


def test_the_edge_device_and_its_own_modules_survive_kill_9(hub, rm, dps, edge):
    own = device_token(hub, edge["id"], edge["key"])
    made = identityd("PUT", modules_url(hub, edge["id"], "durable"), own, edge_module(edge["id"], "durable"))
    assert made.status_code == 200, made.text
    hub.kill9()
    hub.restart()
    assert rm.get_device(edge["id"]).capabilities.iot_edge is True
    assert {m.module_id for m in rm.get_modules(edge["id"])} >= {"$edgeAgent", "$edgeHub", "durable"}
    assert rm.get_module(edge["id"], "durable").managed_by == "iotEdge"
    assert dps.device_registration_state.get(id=edge["rid"])["status"] == "assigned"
