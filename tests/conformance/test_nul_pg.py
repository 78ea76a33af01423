"""The NUL character (`\\u0000`) in JSON on the PostgreSQL store, whose `jsonb` and `text` cannot
hold it: a device's status reason, a configuration's content, a DPS enrollment's initial twin and
a job's method payload are refused with 400 (IoT Hub's `ArgumentInvalid`, DPS's `BadRequest`) and
nothing is written, through the real service SDKs and the REST API; one node over a database and
a nats-server of this module's own."""

from __future__ import annotations

import os
import time

import pytest
import requests
from azure.core.exceptions import HttpResponseError
from azure.iot.deviceprovisioning import DeviceProvisioningClient
from azure.iot.hub import IoTHubConfigurationManager
from azure.iot.hub.models import Configuration, ConfigurationContent
from msrest.exceptions import HttpOperationError

from cluster_helpers import cluster, fresh_database, postgres_admin_url
from conftest import assert_hub_error, test_address
from dps_helpers import dps_info, new_key, sas
from services import nats_server

ADDRESS = test_address("127.0.0.19")
NATS_ADDRESS = test_address("127.0.0.19")  # its own (test_migrate_data.py has .18), port 4222 beside the hub
NATS_PORT = 4223
API = {"api-version": "2021-04-12"}


@pytest.fixture(scope="module")
def pg_hub():
    with fresh_database(postgres_admin_url(), f"ironhub_nul_{os.getpid()}") as store:
        with nats_server(NATS_ADDRESS, NATS_PORT) as nats_url:
            with cluster(store, nats_url, [ADDRESS], prefix="ironhub-nul-pg-") as nodes:
                yield nodes[0]


def rest(hub, method: str, path: str, body=None):
    parts = hub.connection_string_parts()
    token = sas(hub.hostname, parts["SharedAccessKey"], parts["SharedAccessKeyName"])
    return requests.request(method, f"https://{hub.address}{path}", params=API, json=body,
                            headers={"Authorization": token}, timeout=30, verify=hub.ca_file)


def test_a_device_status_reason_with_nul_is_refused(pg_hub):
    r = rest(pg_hub, "PUT", "/devices/nul-dev", {"deviceId": "nul-dev", "statusReason": "a\u0000b"})
    assert r.status_code == 400, r.text
    assert r.headers.get("iothub-errorcode") == "ArgumentInvalid", r.text
    assert rest(pg_hub, "GET", "/devices/nul-dev").status_code == 404


def test_a_configuration_with_nul_is_refused(pg_hub):
    cm = IoTHubConfigurationManager.from_connection_string(pg_hub.connection_string)
    cm.protocol.config.connection.verify = pg_hub.ca_file
    config = Configuration(
        id="nul-config", priority=1, target_condition="*",
        content=ConfigurationContent(device_content={"properties.desired.x": {"s": "a\u0000"}}))
    with pytest.raises(HttpOperationError) as e:
        cm.create_configuration(config)
    assert_hub_error(e, 400, "ArgumentInvalid")
    assert cm.get_configurations(10) == []


def test_a_job_payload_with_nul_is_refused(pg_hub):
    start = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    r = rest(pg_hub, "PUT", "/jobs/v2/nul-job", {
        "jobId": "nul-job", "type": "scheduleDeviceMethod", "queryCondition": "deviceId = 'nobody'", "startTime": start,
        "maxExecutionTimeInSeconds": 60,
        "cloudToDeviceMethod": {"methodName": "m", "payload": {"s": "\u0000"},
                                "responseTimeoutInSeconds": 5}})
    assert r.status_code == 400, r.text
    assert r.headers.get("iothub-errorcode") == "ArgumentInvalid", r.text
    assert rest(pg_hub, "GET", "/jobs/v2/nul-job").status_code == 404


def test_an_enrollment_initial_twin_with_nul_is_refused(pg_hub):
    dps = DeviceProvisioningClient.from_connection_string(
        dps_info(pg_hub)["serviceConnectionString"], connection_verify=pg_hub.ca_file)
    with pytest.raises(HttpResponseError) as e:
        dps.enrollment.create_or_update(id="nul-enrollment", enrollment={
            "registrationId": "nul-enrollment",
            "attestation": {"type": "symmetricKey",
                            "symmetricKey": {"primaryKey": new_key(), "secondaryKey": new_key()}},
            "initialTwin": {"tags": {"site": "a\u0000b"}},
        })
    assert e.value.status_code == 400, e.value
    with pytest.raises(HttpResponseError) as e:
        dps.enrollment.get(id="nul-enrollment")
    assert e.value.status_code == 404
