"""Scheduled jobs (`/jobs/v2`) through the real clients: Python's `IoTHubJobManager`
(azure-iot-hub) scheduling twin updates and direct methods over a query condition, a Python
device client receiving the desired patch and answering the method, `devices.jobs` queried
through the registry manager, Node's `JobClient` (node/jobs.js) and the `ironhub hub job`
commands (az's names and flags). Jobs run in the background, as in IoT Hub, so tests wait for
them with a bounded timeout."""

from __future__ import annotations

import itertools
import json
import os
import time
from datetime import datetime, timedelta, timezone

import pytest
import requests
from azure.iot.device import IoTHubDeviceClient, MethodResponse
from azure.iot.hub import IoTHubJobManager
from azure.iot.hub.models import CloudToDeviceMethod, JobRequest, Twin, TwinProperties
from msrest.exceptions import HttpOperationError

from conftest import assert_hub_error as assert_error, node_json, run_cli
from dps_helpers import sas, wait_for

IRONHUB_ADDRESS = "127.0.0.21"
WAIT_S = 30
API = "api-version=2021-04-12"

_counter = itertools.count(1)


def uid(prefix: str) -> str:
    return f"{prefix}-{os.getpid()}-{next(_counter)}"


@pytest.fixture
def jm(hub):
    manager = IoTHubJobManager.from_connection_string(hub.connection_string)
    manager.protocol.config.connection.verify = hub.ca_file
    return manager


def create_device(rm, device_id: str, tags: dict | None = None) -> str:
    key = rm.create_device_with_sas(device_id, None, None, "enabled").authentication.symmetric_key.primary_key
    if tags:
        rm.update_twin(device_id, Twin(tags=tags), "*")
    return key


def device_client(hub, device_id: str, key: str) -> IoTHubDeviceClient:
    cs = f"HostName={hub.hostname};DeviceId={device_id};SharedAccessKey={key}"
    return IoTHubDeviceClient.create_from_connection_string(cs, server_verification_cert=open(hub.ca_file).read())


def finished(jm, job_id: str):
    def over():
        job = jm.get_scheduled_job(job_id)
        return job if job.status in ("completed", "failed", "cancelled") else None

    return wait_for(over, timeout=WAIT_S, what=f"job {job_id} to finish")


def device_jobs(hub, job_id: str) -> list[dict]:
    """`SELECT * FROM devices.jobs` over REST (the Python SDK reads every query item as a
    `Twin`, which drops a device job's fields)."""
    parts = hub.connection_string_parts()
    token = sas(hub.hostname, parts["SharedAccessKey"], parts["SharedAccessKeyName"])
    r = requests.post(f"https://{hub.address}/devices/query?{API}", headers={"Authorization": token},
                      json={"query": f"SELECT * FROM devices.jobs WHERE devices.jobs.jobId = '{job_id}'"},
                      timeout=10)
    assert r.status_code == 200, r.text
    assert r.headers["x-ms-item-type"] == "deviceJob"
    return sorted(r.json(), key=lambda i: i["deviceId"])


def twin_job(job_id: str, condition: str, **kw) -> JobRequest:
    return JobRequest(
        job_id=job_id, type="scheduleUpdateTwin", query_condition=condition,
        update_twin=Twin(etag="*", tags={"fleet": "moved"}, properties=TwinProperties(desired={"fw": "2.0"})),
        start_time=kw.get("start_time", datetime.now(timezone.utc)),
        max_execution_time_in_seconds=kw.get("max_execution_time_in_seconds", 60),
    )


def test_a_twin_update_job_reaches_the_devices_its_condition_selects(hub, rm, jm):
    group = uid("grp")
    a, b, other = uid("tw-a"), uid("tw-b"), uid("tw-other")
    key_a = create_device(rm, a, {"group": group})
    create_device(rm, b, {"group": group})
    create_device(rm, other, {"group": "elsewhere"})
    client = device_client(hub, a, key_a)
    client.connect()
    try:
        patches = []
        client.on_twin_desired_properties_patch_received = patches.append
        time.sleep(0.5)  # the SDK subscribes in the background
        job_id = uid("twin-job")
        created = jm.create_scheduled_job(job_id, twin_job(job_id, f"tags.group = '{group}'"))
        assert created.job_id == job_id and created.type == "scheduleUpdateTwin"
        assert created.status in ("queued", "running", "completed")
        assert created.query_condition == f"tags.group = '{group}'"
        assert created.created_time and created.start_time and created.max_execution_time_in_seconds == 60

        job = finished(jm, job_id)
        assert job.status == "completed" and job.end_time
        stats = job.device_job_statistics
        assert (stats.device_count, stats.succeeded_count, stats.failed_count) == (2, 2, 0)
        assert (stats.running_count, stats.pending_count) == (0, 0)

        for device_id in (a, b):
            twin = rm.get_twin(device_id)
            assert twin.tags == {"group": group, "fleet": "moved"}
            assert twin.properties.desired["fw"] == "2.0"
        untouched = rm.get_twin(other)
        assert "fleet" not in (untouched.tags or {}) and "fw" not in untouched.properties.desired
        wait_for(lambda: patches, timeout=WAIT_S, what="the desired patch")
        assert patches[0]["fw"] == "2.0" and isinstance(patches[0]["$version"], int)

        records = device_jobs(hub, job_id)
        assert [r["deviceId"] for r in records] == sorted([a, b])
        for r in records:
            assert r["jobType"] == "scheduleUpdateTwin" and r["status"] == "completed"
            assert r["startTimeUtc"] and r["endTimeUtc"] and r["createdDateTimeUtc"] and r["lastUpdatedDateTimeUtc"]
    finally:
        client.shutdown()


def test_a_method_job_answers_for_a_connected_device_and_fails_for_an_offline_one(hub, rm, jm):
    group = uid("mgrp")
    online, offline = uid("m-on"), uid("m-off")
    key = create_device(rm, online, {"group": group})
    create_device(rm, offline, {"group": group})
    client = device_client(hub, online, key)
    client.connect()
    try:
        client.on_method_request_received = lambda r: client.send_method_response(
            MethodResponse.create_from_method_request(r, 200, {"rebooted": True, "got": r.payload}))
        time.sleep(0.5)
        job_id = uid("method-job")
        request = JobRequest(
            job_id=job_id, type="scheduleDeviceMethod", query_condition=f"tags.group = '{group}'",
            cloud_to_device_method=CloudToDeviceMethod(
                method_name="reboot", payload={"delay": 1}, response_timeout_in_seconds=10,
                connect_timeout_in_seconds=0),
            start_time=datetime.now(timezone.utc), max_execution_time_in_seconds=60,
        )
        created = jm.create_scheduled_job(job_id, request)
        assert created.cloud_to_device_method.method_name == "reboot"
        job = finished(jm, job_id)
        assert job.status == "completed"
        stats = job.device_job_statistics
        assert (stats.device_count, stats.succeeded_count, stats.failed_count) == (2, 1, 1)

        records = {r["deviceId"]: r for r in device_jobs(hub, job_id)}
        answered = records[online]
        assert answered["status"] == "completed" and answered["jobType"] == "scheduleDeviceMethod"
        assert answered["outcome"]["deviceMethodResponse"] == {"status": 200, "payload": {"rebooted": True, "got": {"delay": 1}}}
        failed = records[offline]
        assert failed["status"] == "failed"
        assert failed["error"]["code"] == "DeviceNotOnline" and failed["error"]["description"]
    finally:
        client.shutdown()


def test_a_future_job_waits_and_is_cancelled(rm, jm):
    group = uid("fgrp")
    device_id = uid("future")
    create_device(rm, device_id, {"group": group})
    job_id = uid("future-job")
    later = datetime.now(timezone.utc) + timedelta(hours=1)
    created = jm.create_scheduled_job(job_id, twin_job(job_id, f"tags.group = '{group}'", start_time=later))
    assert created.status == "scheduled"
    got = jm.get_scheduled_job(job_id)
    assert got.status == "scheduled" and got.device_job_statistics.device_count == 0

    cancelled = jm.cancel_scheduled_job(job_id)
    assert cancelled.status == "cancelled"
    assert jm.get_scheduled_job(job_id).status == "cancelled"
    assert "fleet" not in (rm.get_twin(device_id).tags or {})
    # Cancelling a job that is over answers it as it is.
    assert jm.cancel_scheduled_job(job_id).status == "cancelled"

    listed = jm.query_scheduled_jobs("scheduleUpdateTwin", "cancelled")
    assert job_id in [item["jobId"] for item in listed.items]
    assert job_id not in [item["jobId"] for item in jm.query_scheduled_jobs("scheduleUpdateTwin", "completed").items]
    assert job_id not in [item["jobId"] for item in jm.query_scheduled_jobs("scheduleDeviceMethod", None).items]


def test_bad_job_requests_are_refused_and_store_nothing(jm):
    job_id = uid("dup")
    jm.create_scheduled_job(job_id, twin_job(job_id, "tags.group = 'nobody'"))
    with pytest.raises(HttpOperationError) as e:
        jm.create_scheduled_job(job_id, twin_job(job_id, "tags.group = 'nobody'"))
    assert_error(e, 409, "JobAlreadyExists")

    bad = uid("bad")
    with pytest.raises(HttpOperationError) as e:
        jm.create_scheduled_job(bad, twin_job(bad, "tags.group = = 'x'"))
    assert e.value.response.status_code == 400 and "query" in e.value.response.text.lower()
    request = twin_job(bad, "tags.group = 'x'")
    request.type = "scheduleSomething"
    with pytest.raises(HttpOperationError) as e:
        jm.create_scheduled_job(bad, request)
    assert_error(e, 400, "ArgumentInvalid")
    request = twin_job(bad, "tags.group = 'x'")
    request.update_twin = None
    with pytest.raises(HttpOperationError) as e:
        jm.create_scheduled_job(bad, request)
    assert_error(e, 400, "ArgumentInvalid")
    request = twin_job(bad, "tags.group = 'x'", max_execution_time_in_seconds=0)
    with pytest.raises(HttpOperationError) as e:
        jm.create_scheduled_job(bad, request)
    assert_error(e, 400, "ArgumentInvalid")
    request = twin_job(uid("other-id"), "tags.group = 'x'")
    with pytest.raises(HttpOperationError) as e:
        jm.create_scheduled_job(bad, request)
    assert_error(e, 400, "ArgumentInvalid")

    with pytest.raises(HttpOperationError) as e:
        jm.get_scheduled_job(bad)
    assert_error(e, 404, "JobNotFound")
    with pytest.raises(HttpOperationError) as e:
        jm.cancel_scheduled_job(bad)
    assert_error(e, 404, "JobNotFound")


def test_the_node_job_client_schedules_a_twin_update(hub, rm):
    group = uid("ngrp")
    device_id = uid("node-dev")
    create_device(rm, device_id, {"group": group})
    job_id = uid("node-job")
    patch = {"etag": "*", "tags": {"viaNode": True}, "properties": {"desired": {"mode": "eco"}}}
    out = node_json("jobs.js", "twin-update", "--job-id", job_id, "--condition", f"tags.group = '{group}'",
                    "--patch", json.dumps(patch),
                    env={"NODE_EXTRA_CA_CERTS": hub.ca_file, "IRONHUB_CONNECTION_STRING": hub.connection_string})
    assert out["scheduled"]["jobId"] == job_id and out["scheduled"]["type"] == "scheduleUpdateTwin"
    assert out["job"]["status"] == "completed"
    assert out["job"]["deviceJobStatistics"]["succeededCount"] == 1
    assert job_id in out["queried"]
    # One job a page: the SDK followed x-ms-continuation through every completed job.
    assert out["pages"] == len(out["queried"]) >= 1
    twin = rm.get_twin(device_id)
    assert twin.tags["viaNode"] is True and twin.properties.desired["mode"] == "eco"


def cli(hub, *args: str, check: bool = True):
    return run_cli("hub", "job", *args, "--login", hub.connection_string, "--cafile", hub.ca_file, check=check)


def test_the_cli_creates_shows_lists_and_cancels_jobs(hub, rm):
    group = uid("cgrp")
    device_id = uid("cli-dev")
    create_device(rm, device_id, {"group": group})
    job_id = uid("cli-job")
    proc = cli(hub, "create", "--job-id", job_id, "--job-type", "scheduleUpdate",
               "--query-condition", f"tags.group = '{group}'",
               "--twin-patch", json.dumps({"tags": {"viaCli": "yes"}}), "--wait", "--poll-interval", "1")
    job = json.loads(proc.stdout)
    assert job["jobId"] == job_id and job["status"] == "completed"
    assert job["deviceJobStatistics"]["succeededCount"] == 1
    assert rm.get_twin(device_id).tags["viaCli"] == "yes"

    shown = json.loads(cli(hub, "show", "--job-id", job_id).stdout)
    assert shown["jobId"] == job_id and shown["type"] == "scheduleUpdateTwin"
    listed = json.loads(cli(hub, "list", "--job-type", "scheduleUpdate", "--job-status", "completed").stdout)
    assert job_id in [j["jobId"] for j in listed]

    later = (datetime.now(timezone.utc) + timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
    future = uid("cli-future")
    created = json.loads(cli(hub, "create", "--job-id", future, "--job-type", "scheduleDeviceMethod",
                             "--query-condition", f"tags.group = '{group}'", "--method-name", "reboot",
                             "--method-payload", '{"delay": 2}', "--start-time", later, "--ttl", "120").stdout)
    assert created["status"] == "scheduled" and created["maxExecutionTimeInSeconds"] == 120
    assert created["cloudToDeviceMethod"]["payload"] == {"delay": 2}
    assert json.loads(cli(hub, "cancel", "--job-id", future).stdout)["status"] == "cancelled"

    missing = cli(hub, "show", "--job-id", uid("nope"), check=False)
    assert missing.returncode != 0 and "JobNotFound" in (missing.stderr + missing.stdout)


def test_an_acknowledged_job_survives_kill_9_and_runs_after_the_restart(hub, rm, jm):
    group = uid("kgrp")
    device_id = uid("durable")
    create_device(rm, device_id, {"group": group})
    job_id = uid("durable-job")
    soon = datetime.now(timezone.utc) + timedelta(seconds=3)
    created = jm.create_scheduled_job(job_id, twin_job(job_id, f"tags.group = '{group}'", start_time=soon))
    assert created.status == "scheduled"
    hub.kill9()
    hub.restart()
    assert jm.get_scheduled_job(job_id).query_condition == f"tags.group = '{group}'"
    job = finished(jm, job_id)
    assert job.status == "completed" and job.device_job_statistics.succeeded_count == 1
    assert rm.get_twin(device_id).properties.desired["fw"] == "2.0"
