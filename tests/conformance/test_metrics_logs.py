"""Metrics and diagnostic logs after a scripted run of real clients: the DPS service SDK
enrolls two devices and the device SDK provisions them (and fails one attestation with a wrong
key), then the Python device SDK sends telemetry, patches its reported properties and answers a
direct method, the service SDK sends cloud-to-device messages (AMQP), updates a twin, invokes
the method and queries; one message is completed by the device SDK (MQTT) and one rejected over
the HTTPS device API (MQTT has no reject). `/metrics` on `--metrics-listen` must then show the
counts under Azure's names with DPS's dimensions, the `--diagnostic-logs-file` must hold the
records of each category with the resource logs' fields, and no key or token used in the run
may appear in any log."""

from __future__ import annotations

import json
import re
import time
import urllib.parse
from pathlib import Path

import pytest
import requests
from azure.iot.device import IoTHubDeviceClient, Message, MethodResponse, ProvisioningDeviceClient
from azure.iot.deviceprovisioning import DeviceProvisioningClient
from azure.iot.hub.models import CloudToDeviceMethod, QuerySpecification, Twin, TwinProperties

from conftest import test_address
from dps_helpers import dps_info, dps_service_key, new_key, sas, wait_for

IRONHUB_ADDRESS = test_address("127.0.0.205")
METRICS_PORT = 9100
API = {"api-version": "2021-04-12"}
FIELDS = ("time", "resourceId", "operationName", "operationVersion", "category", "level",
          "resultType", "resultSignature", "resultDescription", "durationMs", "callerIpAddress",
          "correlationId", "location", "properties")


def ironhub_args(workdir) -> list[str]:
    return ["--metrics-listen", f"{IRONHUB_ADDRESS}:{METRICS_PORT}",
            "--diagnostic-logs", "all",
            "--diagnostic-logs-file", str(workdir / "diag.log")]


def scrape() -> dict:
    """`/metrics` as {(name, ((label, value), ...)): value}."""
    r = requests.get(f"http://{IRONHUB_ADDRESS}:{METRICS_PORT}/metrics", timeout=10)
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("application/openmetrics-text"), r.headers
    assert r.text.endswith("# EOF\n")
    samples = {}
    for line in r.text.splitlines():
        if line.startswith("#"):
            continue
        m = re.fullmatch(r"([A-Za-z_:][A-Za-z0-9_:]*)(?:\{(.*)\})? (\S+)", line)
        assert m, f"not a sample line: {line!r}"
        labels = tuple(re.findall(r'([A-Za-z_][A-Za-z0-9_]*)="((?:[^"\\]|\\.)*)"', m.group(2) or ""))
        samples[(m.group(1), labels)] = float(m.group(3))
    return samples


def ca_pem(hub) -> str:
    with open(hub.ca_file) as f:
        return f.read()


def provision(hub, registration_id: str, key: str):
    client = ProvisioningDeviceClient.create_from_symmetric_key(
        provisioning_host=hub.address, registration_id=registration_id,
        id_scope=dps_info(hub)["idScope"], symmetric_key=key,
        server_verification_cert=ca_pem(hub))
    return client.register()


def diag_records(hub) -> list[dict]:
    path = hub.workdir / "diag.log"
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def test_scripted_run_shows_in_metrics_and_logs(hub, amqp_registry):
    dps = DeviceProvisioningClient.from_connection_string(
        dps_info(hub)["serviceConnectionString"], connection_verify=hub.ca_file)
    rm = hub.registry_manager()
    secrets = {hub.connection_string_parts()["SharedAccessKey"], dps_service_key(hub)}

    # Provisioning: two enrollments, two registrations, one attestation with a wrong key.
    keys = {}
    for rid in ("metrics-dev-1", "metrics-dev-2"):
        keys[rid] = new_key()
        secrets.add(keys[rid])
        dps.enrollment.create_or_update(id=rid, enrollment={
            "registrationId": rid,
            "attestation": {"type": "symmetricKey",
                            "symmetricKey": {"primaryKey": keys[rid], "secondaryKey": new_key()}},
        })
        result = provision(hub, rid, keys[rid])
        assert result.status == "assigned", result
    wrong = new_key()
    secrets.add(wrong)
    with pytest.raises(Exception):
        provision(hub, "metrics-dev-1", wrong)

    # Telemetry, a reported patch and a method answered, over MQTT.
    device_id = "metrics-dev-1"
    client = IoTHubDeviceClient.create_from_symmetric_key(
        symmetric_key=keys[device_id], hostname=hub.hostname, device_id=device_id,
        server_verification_cert=ca_pem(hub))
    client.connect()
    try:
        for n in range(3):
            client.send_message(Message(f"reading {n}"))
        client.patch_twin_reported_properties({"temp": 21})

        def on_method(request):
            client.send_method_response(MethodResponse.create_from_method_request(request, 200, {"ok": True}))

        received = []
        client.on_method_request_received = on_method
        client.on_message_received = received.append  # the SDK's PUBACK completes it
        amqp_registry.send_c2d_message(device_id, "complete me")
        wait_for(lambda: received, what="the C2D message")
        assert received[0].data == b"complete me"
        twin = rm.get_twin(device_id)
        rm.update_twin(device_id, Twin(properties=TwinProperties(desired={"fw": "2"})), twin.etag)
        result = wait_for(lambda: _invoke(rm, device_id), what="the method answered")
        assert result.status == 200 and result.payload == {"ok": True}
        # The queue is empty once the hub recorded the completion.
        wait_for(lambda: scrape().get(("iothub_c2d_commands_egress_complete_success_total", ())) == 1,
                 what="the completion counted")
    finally:
        client.shutdown()

    # A message rejected over the HTTPS device API (the device SDK's MQTT cannot reject).
    amqp_registry.send_c2d_message(device_id, "reject me")
    device_token = sas(f"{hub.hostname}/devices/{device_id}", keys[device_id])
    secrets.add(_signature(device_token))
    headers = {"Authorization": device_token}
    got = requests.get(f"https://{hub.address}/devices/{device_id}/messages/deviceBound",
                       params=API, headers=headers, timeout=10, verify=hub.ca_file)
    assert got.status_code == 200, got.text
    lock = got.headers["ETag"].strip('"')
    rejected = requests.delete(f"https://{hub.address}/devices/{device_id}/messages/deviceBound/{lock}",
                               params={**API, "reject": ""}, headers=headers, timeout=10,
                               verify=hub.ca_file)
    assert rejected.status_code == 204, rejected.text

    page = rm.query_iot_hub(QuerySpecification(query="SELECT * FROM devices"))
    assert len(page.items) == 2

    m = scrape()
    service = hub.hostname

    def value(name, **labels):
        return m.get((name, tuple(labels.items())), 0)

    # DPS, with its dimensions.
    assert value("dps_AttestationAttempts_total", ProvisioningServiceName=service,
                 Status="Success", Protocol="Mqtt") == 2, m
    assert value("dps_AttestationAttempts_total", ProvisioningServiceName=service,
                 Status="Failure", Protocol="Mqtt") == 1, m
    assert value("dps_RegistrationAttempts_total", ProvisioningServiceName=service,
                 IoTHubName=hub.hostname, Status="Success") == 2, m
    assert value("dps_DeviceAssignments_total", ProvisioningServiceName=service,
                 IoTHubName=hub.hostname) == 2, m
    # IoT Hub, under Azure's names.
    assert value("iothub_d2c_telemetry_ingress_allProtocol_total") == 3
    assert value("iothub_d2c_telemetry_ingress_success_total") == 3
    assert value("iothub_c2d_commands_egress_complete_success_total") == 1
    assert value("iothub_c2d_commands_egress_reject_success_total") == 1
    assert value("iothub_c2d_commands_egress_abandon_success_total") == 0
    assert value("ironhub_c2d_messages_sent_total") == 2
    assert value("iothub_c2d_twin_update_success_total") == 1
    assert value("iothub_c2d_twin_read_success_total") == 1
    assert value("iothub_d2c_twin_update_success_total") == 1
    assert value("iothub_c2d_methods_success_total") == 1
    assert value("iothub_twinQueries_success_total") == 1
    assert value("iothub_devices_totalDevices") == 2
    assert value("iothub_RoutingDeliveries_total", EndpointName="events", EndpointType="builtin",
                 RoutingSource="Telemetry", Result="success") == 3
    # Process figures.
    assert ("ironhub_connections", (("listener", "mqtt"),)) in m
    assert ("ironhub_event_log_lag", (("consumer_group", "$Default"),)) in m
    assert any(name == "ironhub_store_call_duration_seconds_count" for name, _ in m)
    # Every series the Grafana dashboard draws exists.
    dashboard = (Path(__file__).parents[2] / "docs" / "grafana" / "ironhub.json").read_text()
    drawn = set(re.findall(r"\b(?:iothub|dps|ironhub)_[A-Za-z0-9_]+", dashboard))
    assert drawn and drawn <= {name for name, _ in m}, drawn - {name for name, _ in m}

    # The diagnostic log: every record has the resource logs' fields.
    wanted = {("DeviceOperations", "AttestationAttempt"), ("DeviceOperations", "RegistrationAttempt"),
              ("ServiceOperations", "Upsert"), ("DeviceIdentityOperations", "create"),
              ("Connections", "deviceConnect"), ("Connections", "deviceDisconnect"),
              ("DeviceTelemetry", "ingress"), ("C2DCommands", "send"), ("C2DCommands", "complete"),
              ("C2DCommands", "reject"), ("DirectMethods", "send"), ("TwinQueries", "query")}
    wait_for(lambda: wanted <= {(r["category"], r["operationName"]) for r in diag_records(hub)},
             what="every category's records in the diagnostic log")
    records = diag_records(hub)
    for r in records:
        assert set(FIELDS) <= set(r), r
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", r["time"]), r
        assert r["durationMs"].isdigit(), r
        assert r["resultType"] in ("Success", "ClientError", "Failure"), r
        assert re.fullmatch(r"[0-9a-f-]{36}|[^\s]+", r["correlationId"]), r
        kind = "PROVISIONINGSERVICES" if r["category"].endswith("Operations") and \
            r["category"] != "DeviceIdentityOperations" else "IOTHUBS"
        assert r["resourceId"].endswith(f"/PROVIDERS/MICROSOFT.DEVICES/{kind}/{hub.hostname.upper()}"), r
        json.loads(r["properties"])  # a JSON document in a string, as Azure writes it

    def props(category, operation):
        return [(r, json.loads(r["properties"])) for r in records
                if r["category"] == category and r["operationName"] == operation]

    attestations = props("DeviceOperations", "AttestationAttempt")
    assert sorted(r["resultType"] for r, _ in attestations) == ["ClientError", "Success", "Success"]
    for r, p in attestations:
        assert p["type"] == "Registration" and p["protocol"] == "Mqtt" and p["id"].startswith("metrics-dev-")
        assert r["callerIpAddress"].endswith(".XXX"), r
        # The device SDK's api-version 2019-03-31, named as DPS's log examples name it.
        assert r["operationVersion"] == "March2019", r
    failed = next(r for r, _ in attestations if r["resultType"] == "ClientError")
    assert failed["resultSignature"] == "401", failed
    upserts = props("ServiceOperations", "Upsert")
    assert {p["id"] for _, p in upserts} == {"metrics-dev-1", "metrics-dev-2"}
    assert {r["operationVersion"] for r, _ in upserts} == {"October2021"}  # the service SDK's 2021-10-01
    connects = [p for _, p in props("Connections", "deviceConnect") if p.get("deviceId") == device_id]
    assert connects and connects[0]["protocol"] == "Mqtt" and '"type":"sas"' in connects[0]["authType"]
    assert connects[0]["maskedIpAddress"].endswith(".XXX")
    assert len(props("DeviceTelemetry", "ingress")) == 3
    [(complete, completed)] = props("C2DCommands", "complete")
    assert completed["deviceId"] == device_id and complete["correlationId"] == completed["messageId"]
    sends = [p for _, p in props("C2DCommands", "send")]
    assert len(sends) == 2 and all(p["protocol"] == "Amqp" for p in sends), sends
    [(_, reject)] = props("C2DCommands", "reject")
    assert reject["protocol"] == "Http"
    [method] = [p for r, p in props("DirectMethods", "send") if r["resultType"] == "Success"]
    assert method["methodName"] == "echo" and method["deviceId"] == device_id and method["status"] == 200
    [(_, query)] = props("TwinQueries", "query")
    assert query["query"] == "SELECT * FROM devices" and query["resultSize"] == 2

    # No key, token or signature in any log of the run.
    logs = (hub.workdir / "diag.log").read_text() + hub.stderr_path.read_text() + hub.stdout_path.read_text()
    assert "SharedAccessSignature" not in logs and "sig=" not in logs
    for secret in secrets:
        for form in {secret, urllib.parse.quote(secret, safe=""), urllib.parse.quote_plus(secret)}:
            assert form not in logs, "a secret is in the logs"


def _invoke(rm, device_id):
    """The method call once the device SDK subscribed to methods (None while it has not)."""
    from msrest.exceptions import HttpOperationError

    try:
        return rm.invoke_device_method(
            device_id, CloudToDeviceMethod(method_name="echo", payload={"n": 1}, response_timeout_in_seconds=10))
    except HttpOperationError as e:
        if e.response.status_code == 404:
            time.sleep(0.1)
            return None
        raise


def _signature(token: str) -> str:
    fields = dict(p.split("=", 1) for p in token.removeprefix("SharedAccessSignature ").split("&"))
    return urllib.parse.unquote(fields["sig"])
