"""Editing the routing document in the web console (`/console/routes`), driven in headless
Chromium by `node/console_routing.js`: a custom event stream endpoint and a route with a
condition to it added through the forms, then telemetry from the Python device SDK that
matches it read back from the endpoint's stream (telemetry that does not, from the built-in endpoint); a bad
condition refused with the query parser's message beside the field and nothing saved; a
route edited and deleted; an enrichment on the routed messages; an ETag conflict between two
tabs; the fallback route switched off and on. A read-only policy sees no edit form and its
forged post is refused (401), changing nothing.
"""

from __future__ import annotations

import json
import uuid

from azure.iot.device import IoTHubDeviceClient, Message

from conftest import test_address
from console_helpers import console_request, csrf_of, drive, policy_connection_string
from routing_helpers import rest, stream_events

IRONHUB_ADDRESS = test_address("127.0.0.83")
# The client address the direct requests of the read-only checks come from.
SOURCE_ADDRESS = test_address("127.0.0.84")
WAIT_S = 20


def routing(hub) -> dict:
    r = rest(hub, "GET", "/routing")
    assert r.status_code == 200, r.text
    return r.json()


def message(level: str) -> Message:
    m = Message(json.dumps({"level": level}), message_id=str(uuid.uuid4()), content_encoding="utf-8",
                content_type="application/json")
    m.custom_properties["level"] = level
    return m


def test_routing_edited_in_the_console_routes_device_telemetry(hub, rm):
    device_id = "routed-dev"
    key = rm.create_device_with_sas(device_id, None, None, "enabled").authentication.symmetric_key.primary_key
    device = IoTHubDeviceClient.create_from_connection_string(
        f"HostName={hub.hostname};DeviceId={device_id};SharedAccessKey={key}",
        server_verification_cert=open(hub.ca_file).read())
    device.connect()

    def answer(step, msg):
        if step == "bad-condition":
            # Nothing of the refused route was saved.
            doc = routing(hub)
            assert [r["name"] for r in doc["routes"]] == ["critical"], doc
        elif step == "fallback-off":
            assert routing(hub)["fallbackRoute"]["isEnabled"] is False
        elif step == "send-telemetry":
            for level in ("critical", "high", "low"):
                device.send_message(message(level))

    try:
        result = drive("console_routing.js", [f"https://{hub.hostname}"],
                       {"IRONHUB_CONNECTION_STRING": hub.connection_string}, answer)
    finally:
        device.shutdown()

    assert result["endpointStatus"] == 200 and "saved" in result["endpointNotice"], result
    assert "alerts" in result["endpointsTable"] and "eventHubs" in result["endpointsTable"]
    assert result["routeStatus"] == 200 and "saved" in result["routeNotice"], result
    # The query parser's own message, beside the field; the draft kept.
    assert result["badConditionStatus"] == 400
    assert "condition of the route 'broken' is not valid" in result["badConditionMessage"], result
    assert "column" in result["badConditionMessage"]
    assert result["badConditionKept"] == "level = = 'x'"
    assert result["editPrefilled"] == "level = 'critical'"
    assert result["editStatus"] == 200 and "level = 'high'" in result["routesTable"], result
    assert result["enrichmentStatus"] == 200
    assert result["tempStatus"] == 200
    assert result["conflictStatus"] == 412 and "ETag" in result["conflictNotice"], result
    assert result["deleteStatus"] == 200 and "temp" not in result["routesAfterDelete"], result
    assert result["fallbackOffStatus"] == 200 and result["fallbackOff"] == "disabled"
    assert result["fallbackOnStatus"] == 200 and result["fallbackOn"] == "enabled"

    # The document the REST API reads is the one the forms made.
    doc = routing(hub)
    assert doc["endpoints"]["eventHubs"] == [{"name": "alerts", "partitionCount": 1}], doc
    assert [(r["name"], r["condition"], r["endpointNames"], r["isEnabled"]) for r in doc["routes"]] == [
        ("critical", "level = 'critical' OR level = 'high'", ["alerts"], True)], doc
    assert doc["enrichments"] == [{"key": "origin", "value": "console", "endpointNames": ["alerts"]}]
    assert all(r["name"] != "late" for r in doc["routes"])

    # The routed telemetry: 'critical' and 'high' on the endpoint, enriched; 'low' not.
    events = stream_events(hub, "alerts", device_id)
    assert sorted(e["applicationProperties"]["level"] for e in events) == ["critical", "high"], events
    assert all(e["applicationProperties"].get("origin") == "console" for e in events), events
    # The one no route took went to the built-in endpoint by the fallback route.
    builtin = stream_events(hub, None, device_id)
    assert [e["applicationProperties"]["level"] for e in builtin] == ["low"], builtin

    # A read-only policy: no edit forms, and a forged post refused without a change.
    read_only = dict(p.split("=", 1) for p in policy_connection_string(hub, "registryRead").split(";"))
    status, headers, _ = console_request(hub, SOURCE_ADDRESS, "POST", "/console/signin",
                                         {"policy": "registryRead", "key": read_only["SharedAccessKey"]})
    assert status == 303
    reader = headers["Set-Cookie"].split(";", 1)[0]
    status, _, page = console_request(hub, SOURCE_ADDRESS, "GET", "/console/routes", cookie=reader)
    assert status == 200 and "critical" in page
    for control in ('id="route-form"', 'id="endpoint-form"', 'id="fallback-form"', 'id="enrichment-form"',
                    'id="delete-route-critical"', "?edit="):
        assert control not in page, control
    etag = rest(hub, "GET", "/routing").headers["ETag"].strip('"')
    forged = {"csrf": csrf_of(page), "etag": etag, "name": "critical"}
    status, _, _ = console_request(hub, SOURCE_ADDRESS, "POST", "/console/routes/route/delete", forged, cookie=reader)
    assert status == 401
    assert [r["name"] for r in routing(hub)["routes"]] == ["critical"]
