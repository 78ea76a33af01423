"""Message routing (issue 9, parts 3 and 4) against real clients: routes configured with the
`ironhub hub message-endpoint` / `message-route` / `message-enrichment` CLI (az's command and
flag names), telemetry from the Python device SDK and `mosquitto_pub` routed by conditions on
application properties, `$body` and `$twin.tags` to custom event streams, read back with the
Event Hubs SDK (`azure-eventhub`, the stream's own entity) and the REST event stream
(`?endpoint=`); enrichments on the messages read; the fallback route on and off; twin change,
device lifecycle and connection state events with IoT Hub's shapes; `message-route test`; and
bad input (a route naming a missing endpoint, a bad condition) refused with IoT Hub's 400 and
nothing changed.
"""

from __future__ import annotations

import json
import subprocess
import uuid

import pytest
import requests
from azure.eventhub import EventHubConsumerClient
from azure.iot.device import IoTHubDeviceClient, Message

from conftest import ironhub_bin, require_tool, test_address
from eventhub_helpers import receive_events
from routing_helpers import API, owner_auth, rest, stream_events

IRONHUB_ADDRESS = test_address("127.0.0.110")
TIMEOUT_S = 60
WAIT_S = 20


def cli(hub, *args: str, ok: bool = True):
    """`ironhub <args> --data-dir …`: the parsed JSON output (None when it prints nothing), or
    with `ok=False` the failed process."""
    proc = subprocess.run([ironhub_bin(), *args, "--data-dir", str(hub.data_dir)], capture_output=True,
                          text=True, timeout=TIMEOUT_S, stdin=subprocess.DEVNULL)
    if not ok:
        assert proc.returncode not in (0, 2), f"`{' '.join(args)}` should have failed:\n{proc.stdout}"
        return proc
    assert proc.returncode == 0, f"`{' '.join(args)}` exited {proc.returncode}:\n{proc.stdout}\n{proc.stderr}"
    return json.loads(proc.stdout) if proc.stdout.strip() else None


def hub_name(hub) -> str:
    """The hub's name as its events carry it (`hubName`, `$iothubname`): its entity's name."""
    return hub.info["eventHubCompatible"]["entityPath"]


def device_client(hub, device_id: str) -> IoTHubDeviceClient:
    rm = hub.registry_manager()
    key = rm.create_device_with_sas(device_id, None, None, "enabled").authentication.symmetric_key.primary_key
    cs = f"HostName={hub.hostname};DeviceId={device_id};SharedAccessKey={key}"
    return IoTHubDeviceClient.create_from_connection_string(cs, server_verification_cert=open(hub.ca_file).read())


def json_message(body: dict, **props: str) -> Message:
    m = Message(json.dumps(body), message_id=str(uuid.uuid4()), content_encoding="utf-8",
                content_type="application/json")
    m.custom_properties.update(props)
    return m


def read_entity(hub, entity: str, count: int) -> list:
    """The first `count` events of every partition of an Event Hubs entity, read with the
    Event Hubs SDK through the connection string `ironhub info` prints, its EntityPath
    replaced by `entity`."""
    cs = hub.info["eventHubCompatible"]["connectionString"]
    cs = ";".join(p if not p.startswith("EntityPath=") else f"EntityPath={entity}" for p in cs.split(";"))
    client = EventHubConsumerClient.from_connection_string(cs, consumer_group="$Default",
                                                          connection_verify=hub.ca_file, retry_total=0)
    return receive_events(client, count, wait_s=WAIT_S, starting_position="-1")


@pytest.fixture(scope="module")
def routed(hub):
    """Endpoints, routes and enrichments made with the CLI, as az makes them."""
    cli(hub, "hub", "message-endpoint", "create", "--endpoint-name", "hot", "--endpoint-type", "eventhub",
        "--partition-count", "2")
    for name in ("alerts", "sites", "ops"):
        cli(hub, "hub", "message-endpoint", "create", "--endpoint-name", name, "--endpoint-type", "eventhub")
    routes = [
        ("hot", "DeviceMessages", "hot", "$body.temperature > 30"),
        ("alerts", "DeviceMessages", "alerts", "level = 'critical'"),
        ("sites", "DeviceMessages", "sites", "$twin.tags.site = 'plant-1' AND $contentType = 'application/json'"),
        ("twin", "TwinChangeEvents", "ops", "true"),
        ("life", "DeviceLifecycleEvents", "ops", "true"),
        ("conn", "DeviceConnectionStateEvents", "ops", "true"),
    ]
    for name, source, endpoint, condition in routes:
        cli(hub, "hub", "message-route", "create", "--route-name", name, "--source", source,
            "--endpoint-name", endpoint, "--condition", condition)
    cli(hub, "hub", "message-enrichment", "create", "--key", "site", "--value", "$twin.tags.site",
        "--endpoints", "hot", "sites")
    cli(hub, "hub", "message-enrichment", "create", "--key", "hubname", "--value", "$iothubname",
        "--endpoints", "hot", "events")
    return hub


def test_the_cli_shows_what_it_configured(routed):
    hub = routed
    routes = cli(hub, "hub", "message-route", "list", "--source", "DeviceMessages")
    assert [r["name"] for r in routes] == ["hot", "alerts", "sites"]
    assert cli(hub, "hub", "message-route", "show", "--route-name", "hot") == {
        "name": "hot", "source": "DeviceMessages", "condition": "$body.temperature > 30",
        "endpointNames": ["hot"], "isEnabled": True,
    }
    endpoint = cli(hub, "hub", "message-endpoint", "show", "--endpoint-name", "hot")
    assert endpoint["name"] == "hot" and endpoint["partitionCount"] == 2
    assert [e["key"] for e in cli(hub, "hub", "message-enrichment", "list")] == ["site", "hubname"]
    assert cli(hub, "hub", "message-route", "fallback", "show")["isEnabled"] is True


def test_telemetry_is_routed_by_conditions_with_enrichments(routed):
    hub = routed
    rm = hub.registry_manager()
    client = device_client(hub, "r-dev1")
    twin = rm.get_twin("r-dev1")
    twin.tags = {"site": "plant-1"}
    rm.update_twin("r-dev1", twin, twin.etag)
    client.connect()
    try:
        client.send_message(json_message({"temperature": 35}, level="info"))     # hot, sites
        client.send_message(json_message({"temperature": 10}, level="critical"))  # alerts, sites
    finally:
        client.shutdown()

    # A second device, no site tag, with mosquitto_pub: matches nothing, so the fallback takes it.
    require_tool("mosquitto_pub")
    rm.create_device_with_sas("r-dev2", None, None, "enabled")
    token = cli(hub, "hub", "generate-sas-token", "-d", "r-dev2")["sas"]
    topic = "devices/r-dev2/messages/events/level=debug&$.ct=application%2Fjson&$.ce=utf-8"
    proc = subprocess.run(
        ["mosquitto_pub", "-h", hub.address, "-p", "8883", "--cafile", hub.ca_file, "-V", "mqttv311",
         "-i", "r-dev2", "-u", f"{hub.hostname}/r-dev2/?api-version={API}", "-P", token,
         "-t", topic, "-q", "1", "-m", '{"temperature": 31.5}'],
        capture_output=True, text=True, timeout=TIMEOUT_S)
    assert proc.returncode == 0, proc.stderr

    # `hot`, read with the Event Hubs SDK as its own entity: r-dev1's hot message, and r-dev2's
    # (31.5 > 30), each with the enrichments for `hot`.
    hot = read_entity(hub, "hot", 2)
    by_device = {e.system_properties[b"iothub-connection-device-id"]: e for e in hot}
    assert set(by_device) == {b"r-dev1", b"r-dev2"}
    first = by_device[b"r-dev1"]
    assert json.loads(first.body_as_str()) == {"temperature": 35}
    assert first.properties[b"level"] == b"info"
    assert first.properties[b"site"] == b"plant-1"
    assert first.properties[b"hubname"] == hub_name(hub).encode()
    assert by_device[b"r-dev2"].properties[b"site"] == b"$twin.tags.site"  # no such tag: the path itself

    # `alerts` and `sites` over the REST stream; a message is in each endpoint once.
    alerts = stream_events(hub, "alerts")
    assert [e["body"] for e in alerts] == [{"temperature": 10}]
    assert "hubname" not in alerts[0]["applicationProperties"]
    sites = stream_events(hub, "sites")
    assert sorted(e["body"]["temperature"] for e in sites) == [10, 35]
    assert all(e["applicationProperties"]["site"] == "plant-1" for e in sites)

    # The built-in endpoint has none of them: each matched a route, so the fallback did not
    # apply.
    assert stream_events(hub, None, "r-dev1") == []
    assert stream_events(hub, None, "r-dev2") == []


def test_the_fallback_route_on_and_off(routed):
    hub = routed
    client = device_client(hub, "r-fallback")
    client.connect()
    try:
        client.send_message(json_message({"temperature": 1}, level="debug"))
        builtin = stream_events(hub, None, "r-fallback")
        assert [e["body"] for e in builtin] == [{"temperature": 1}]
        assert builtin[0]["applicationProperties"]["hubname"] == hub_name(hub)

        assert cli(hub, "hub", "message-route", "fallback", "set", "--enabled", "false")["isEnabled"] is False
        client.send_message(json_message({"temperature": 2}, level="debug"))
        assert len(stream_events(hub, None, "r-fallback")) == 1, "an unmatched message goes nowhere"
        cli(hub, "hub", "message-route", "fallback", "set", "--enabled", "true")
        client.send_message(json_message({"temperature": 3}, level="debug"))
        assert len(stream_events(hub, None, "r-fallback")) == 2
    finally:
        client.shutdown()


def test_hub_events_flow_through_routes_with_iot_hub_shapes(routed):
    hub = routed
    rm = hub.registry_manager()
    client = device_client(hub, "r-events")  # created: createDeviceIdentity
    twin = rm.get_twin("r-events")
    twin.tags = {"floor": 3}
    rm.update_twin("r-events", twin, twin.etag)  # updateTwin (tags)
    client.connect()  # deviceConnected
    client.patch_twin_reported_properties({"firmware": "1.2"})  # updateTwin (reported)
    client.shutdown()  # deviceDisconnected
    rm.delete_device("r-events")  # deleteDeviceIdentity

    events = [e for e in stream_events(hub, "ops", "r-events")]
    events.sort(key=lambda e: e["enqueuedTime"])
    ops = [e["applicationProperties"]["opType"] for e in events]
    assert ops == ["createDeviceIdentity", "updateTwin", "deviceConnected", "updateTwin",
                   "deviceDisconnected", "deleteDeviceIdentity"], ops
    schemas = {
        "deviceLifecycleEvents": "deviceLifecycleNotification",
        "twinChangeEvents": "twinChangeNotification",
        "deviceConnectionStateEvents": "deviceConnectionStateNotification",
    }
    for e in events:
        app, system = e["applicationProperties"], e["systemProperties"]
        assert app["hubName"] == hub_name(hub)
        assert app["deviceId"] == "r-events"
        assert app["operationTimestamp"]
        assert app["iothub-message-schema"] == schemas[system["iothub-message-source"]]
        assert system["iothub-connection-device-id"] == "r-events"
        assert system["content-type"] == "application/json"
        assert system["content-encoding"] == "utf-8"
    created, tags, connected, reported, disconnected, deleted = events
    assert created["body"]["deviceId"] == "r-events"
    assert tags["body"]["tags"] == {"floor": 3}
    assert reported["body"]["properties"]["reported"]["firmware"] == "1.2"
    assert reported["body"]["version"] > tags["body"]["version"]
    first, second = connected["body"]["sequenceNumber"], disconnected["body"]["sequenceNumber"]
    assert len(first) == 64 and first < second
    assert deleted["body"]["tags"] == {"floor": 3}
    # Hub events never reach the built-in endpoint without a route.
    assert stream_events(hub, None, "r-events") == []


def test_route_test_evaluates_a_sample_message(routed):
    hub = routed
    sp = "contentType=application/json;contentEncoding=utf-8"
    hot = cli(hub, "hub", "message-route", "test", "--route-name", "hot", "--body", '{"temperature": 40}',
              "--sp", sp)
    assert hot == {"result": "true", "details": {"compilationErrors": []}}
    cold = cli(hub, "hub", "message-route", "test", "--route-name", "hot", "--body", '{"temperature": 4}',
               "--sp", sp)
    assert cold["result"] == "false"
    undefined = cli(hub, "hub", "message-route", "test", "--route-name", "hot", "--body", '{"temperature": 40}')
    assert undefined["result"] == "undefined", "without a JSON content type the body is not read"
    matched = cli(hub, "hub", "message-route", "test", "--source", "DeviceMessages",
                  "--body", '{"temperature": 40}', "--sp", sp, "--ap", "level=critical")
    assert sorted(r["properties"]["name"] for r in matched["routes"]) == ["alerts", "hot"]
    broken = rest(hub, "POST", "/routing/routes/$testnew", json={
        "message": {"body": "{}"},
        "route": {"name": "x", "source": "DeviceMessages", "condition": "$body.a >", "endpointNames": ["events"],
                  "isEnabled": True},
    })
    assert broken.status_code == 200
    errors = broken.json()["details"]["compilationErrors"]
    assert errors and errors[0]["severity"] == "error" and errors[0]["location"]["start"]["line"] == 1


def test_bad_input_is_refused_and_changes_nothing(routed):
    hub = routed
    before = rest(hub, "GET", "/routing")
    assert before.status_code == 200
    proc = cli(hub, "hub", "message-route", "create", "--route-name", "lost", "--source", "DeviceMessages",
               "--endpoint-name", "missing", ok=False)
    assert "missing" in proc.stderr and "does not exist" in proc.stderr
    doc = before.json()
    doc["routes"].append({"name": "broken", "source": "DeviceMessages", "condition": "level = = 'x'",
                          "endpointNames": ["hot"], "isEnabled": True})
    r = rest(hub, "PUT", "/routing", json=doc, headers={"If-Match": before.headers["ETag"]})
    assert r.status_code == 400, r.text
    assert r.headers.get("iothub-errorcode") == "ArgumentInvalid"
    assert "broken" in r.text
    stale = rest(hub, "PUT", "/routing", json=before.json(), headers={"If-Match": '"stale"'})
    assert stale.status_code == 412
    after = rest(hub, "GET", "/routing")
    assert after.json() == before.json()
    assert after.headers["ETag"] == before.headers["ETag"]
    missing = requests.get(f"https://{hub.address}/events/consumergroups/$Default/stream",
                           params={"endpoint": "nope", "api-version": API, "timeout": "1"},
                           headers=owner_auth(hub), timeout=TIMEOUT_S, verify=hub.ca_file)
    assert missing.status_code == 404


def test_cli_updates_and_deletes(routed):
    hub = routed
    updated = cli(hub, "hub", "message-route", "update", "--route-name", "alerts", "--condition", "level = 'warn'",
                  "--enabled", "false")
    assert updated["condition"] == "level = 'warn'" and updated["isEnabled"] is False
    # An endpoint a route names cannot go: the document would name a missing endpoint.
    proc = cli(hub, "hub", "message-endpoint", "delete", "--endpoint-name", "alerts", ok=False)
    assert "does not exist" in proc.stderr
    cli(hub, "hub", "message-route", "delete", "--route-name", "alerts")
    assert "alerts" not in [r["name"] for r in cli(hub, "hub", "message-route", "list")]
    assert cli(hub, "hub", "message-endpoint", "delete", "--endpoint-name", "alerts") is None
    names = [e["name"] for e in cli(hub, "hub", "message-endpoint", "list", "--endpoint-type", "eventhub")]
    assert names == ["hot", "sites", "ops"]
    enrichments = cli(hub, "hub", "message-enrichment", "update", "--key", "site", "--value", "fixed",
                      "--endpoints", "hot")
    assert {"key": "site", "value": "fixed", "endpointNames": ["hot"]} in enrichments
    cli(hub, "hub", "message-enrichment", "delete", "--key", "site")
    assert [e["key"] for e in cli(hub, "hub", "message-enrichment", "list")] == ["hubname"]
    # Deleting every route of a source.
    cli(hub, "hub", "message-route", "delete", "--source", "TwinChangeEvents")
    assert cli(hub, "hub", "message-route", "list", "--source", "TwinChangeEvents") == []
