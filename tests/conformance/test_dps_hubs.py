"""Allocation to linked hubs and reprovisioning, with two real ironhub servers: A (the DPS,
and its own hub) and B (another hub, linked to A's DPS by its owner connection string and
reached over its REST API, as DPS reaches a linked Azure IoT Hub).

- evenly weighted distribution honours the allocation weights;
- static assignment puts a device on the enrollment's hub, where the Python device SDK then
  connects and sends telemetry;
- custom allocation calls a small local webhook (POST, DPS's documented request body), retries a
  503, reports a 400 as DPS does, and hands the webhook's payload to the device;
- each reprovisioning policy (migrate, reset, never) when an enrollment moves to the other hub;
- lowest latency follows the round trips DPS measures (B is also reached through a proxy
  that delays every packet).
"""

from __future__ import annotations

import asyncio
import json
import shutil
import signal
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import requests
from azure.iot.device import IoTHubDeviceClient, Message, ProvisioningDeviceClient

from conftest import IronHub, test_address
from dps_helpers import derive, dps_info, dps_rest, error_chain, new_key, sas, stored_events, wait_for

A_ADDRESS = "127.0.0.12"
B_ADDRESS = "127.0.0.13"
B_SLOW_ADDRESS = "127.0.0.15"  # B again, through a proxy that adds delay
WEBHOOK_ADDRESS = "127.0.0.14"
PROXY_DELAY_S = 0.15


def start_server(address: str, extra: list[str]) -> IronHub:
    workdir = Path(tempfile.mkdtemp(prefix=f"ironhub-dps-hubs-{address}-"))
    server = IronHub(address, workdir, extra)
    server.start()
    return server


@pytest.fixture(scope="module")
def hub_b():
    b = start_server(test_address(B_ADDRESS), ["--hostname", test_address(B_SLOW_ADDRESS)])
    yield b
    b._kill(signal.SIGKILL)
    shutil.rmtree(b.workdir, ignore_errors=True)


@pytest.fixture(scope="module")
def hub(hub_b):
    """A: the DPS, trusting B's CA for its calls to B's registry."""
    a = start_server(test_address(A_ADDRESS), ["--trust-ca", hub_b.ca_file])
    yield a
    a._kill(signal.SIGKILL)
    shutil.rmtree(a.workdir, ignore_errors=True)


@pytest.fixture(scope="module")
def linked(hub, hub_b):
    """B linked to A's DPS with three times A's weight."""
    r = dps_rest(hub, "PUT", f"/dps/linkedHubs/{hub_b.hostname}",
                 {"connectionString": hub_b.connection_string, "allocationWeight": 3})
    assert r.status_code == 200, r.text
    listed = dps_rest(hub, "GET", "/dps/linkedHubs").json()["value"]
    assert sorted(h["name"] for h in listed) == sorted([hub.hostname, hub_b.hostname])
    assert all(h["connectionString"].endswith("SharedAccessKey=****") for h in listed)
    return hub_b


def ca_pem(server: IronHub) -> str:
    return Path(server.ca_file).read_text()


def register_http(dps: IronHub, rid: str, key: str, payload=None) -> dict:
    """Registers over DPS's HTTPS device API and polls until the operation ends."""
    scope = dps_info(dps)["idScope"]
    headers = {"Authorization": sas(f"{scope}/registrations/{rid}", key, "registration")}
    base = f"https://{dps.address}/{scope}/registrations/{rid}"
    body = {"registrationId": rid, **({"payload": payload} if payload is not None else {})}
    r = requests.put(f"{base}/register", params={"api-version": "2021-06-01"}, json=body,
                     headers=headers, verify=dps.ca_file, timeout=30)
    assert r.status_code == 202, r.text
    operation = r.json()["operationId"]
    time.sleep(0.3)
    for _ in range(8):
        r = requests.get(f"{base}/operations/{operation}", params={"api-version": "2021-06-01"},
                         headers=headers, verify=dps.ca_file, timeout=30)
        if r.status_code == 200:
            return r.json()
        assert r.status_code == 202, r.text
        time.sleep(1.5)
    raise AssertionError(f"{rid} was never assigned")


def provision_sdk(dps: IronHub, rid: str, key: str, payload=None):
    client = ProvisioningDeviceClient.create_from_symmetric_key(
        provisioning_host=dps.address, registration_id=rid, id_scope=dps_info(dps)["idScope"],
        symmetric_key=key, server_verification_cert=ca_pem(dps),
    )
    if payload is not None:
        client.provisioning_payload = payload
    return client.register()


def send_to_assigned_hub(server: IronHub, result, key: str, text: str) -> None:
    state = result.registration_state
    assert state.assigned_hub == server.hostname
    device = IoTHubDeviceClient.create_from_symmetric_key(
        symmetric_key=key, hostname=state.assigned_hub, device_id=state.device_id,
        server_verification_cert=ca_pem(server),
    )
    try:
        device.connect()
        device.send_message(Message(text))
    finally:
        device.shutdown()
    wait_for(lambda: text in [e["body"] for e in stored_events(server, state.device_id)],
             what=f"{state.device_id}'s telemetry on {server.hostname}")


def individual(rid: str, key: str, **settings) -> dict:
    return {"registrationId": rid,
            "attestation": {"type": "symmetricKey", "symmetricKey": {"primaryKey": key, "secondaryKey": key}},
            **settings}


def test_evenly_weighted_distribution_honours_weights(hub, linked):
    group_key = new_key()
    r = dps_rest(hub, "PUT", "/enrollmentGroups/weighted", {
        "enrollmentGroupId": "weighted",
        "attestation": {"type": "symmetricKey", "symmetricKey": {"primaryKey": group_key, "secondaryKey": new_key()}},
        "allocationPolicy": "hashed",
    })
    assert r.status_code == 200, r.text
    ids = [f"weighted-{i:02d}" for i in range(40)]
    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(lambda rid: register_http(hub, rid, derive(group_key, rid)), ids))
    hubs = [res["registrationState"]["assignedHub"] for res in results]
    assert all(res["status"] == "assigned" for res in results)
    on_b = hubs.count(linked.hostname)
    # B has weight 3, A weight 1: about 30 of 40 (a binomial with sd 2.7).
    assert 22 <= on_b <= 38, hubs
    assert hubs.count(hub.hostname) == 40 - on_b
    # The devices exist on the hub they were given, with their derived keys.
    rm_b = linked.registry_manager()
    for rid, h in zip(ids, hubs):
        if h == linked.hostname:
            assert rm_b.get_device(rid).authentication.symmetric_key.primary_key == derive(group_key, rid)
            break
    # A registration id always lands on the same hub.
    again = register_http(hub, ids[0], derive(group_key, ids[0]))
    assert again["registrationState"]["assignedHub"] == hubs[0]


def test_static_assignment_to_the_other_hub(hub, linked):
    key = new_key()
    rid = "static-to-b"
    r = dps_rest(hub, "PUT", f"/enrollments/{rid}",
                 individual(rid, key, allocationPolicy="static", iotHubHostName=linked.hostname))
    assert r.status_code == 200, r.text
    result = provision_sdk(hub, rid, key)
    assert result.status == "assigned"
    assert result.registration_state.assigned_hub == linked.hostname
    with pytest.raises(Exception):
        hub.registry_manager().get_device(rid)
    send_to_assigned_hub(linked, result, key, "hello hub B")

    # Naming a hub that is not linked is refused, and nothing is stored.
    r = dps_rest(hub, "PUT", "/enrollments/unlinked",
                 individual("unlinked", key, allocationPolicy="static", iotHubHostName="elsewhere.example"))
    assert r.status_code == 400, r.text
    assert dps_rest(hub, "GET", "/enrollments/unlinked").status_code == 404


class Webhook:
    """A custom allocation function: POST /api/alloc?code=… picks the hub named in the device's
    payload, /api/flaky answers 503 once, /api/reject answers 400."""

    def __init__(self, address: str, hubs: dict):
        self.calls: list[tuple[str, dict]] = []
        self.flaky_failures = 1
        hook = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                hook.calls.append((self.path, body))
                if self.path.startswith("/api/reject"):
                    return self.reply(400, "Unrecognized device registration.")
                if self.path.startswith("/api/flaky") and hook.flaky_failures > 0:
                    hook.flaky_failures -= 1
                    return self.reply(503, "busy")
                payload = body["deviceRuntimeContext"].get("payload") or {}
                self.reply(200, json.dumps({
                    "iotHubHostName": hubs[payload.get("hub", "a")],
                    "initialTwin": {"tags": {"allocatedBy": "webhook"},
                                    "properties": {"desired": {"region": payload.get("hub", "a")}}},
                    "payload": {"welcome": payload.get("hub", "a")},
                }), "application/json")

            def reply(self, status, text, content_type="text/plain"):
                data = text.encode()
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer((address, 8080), Handler)
        self.url = f"http://{address}:8080"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture(scope="module")
def webhook(hub, linked):
    w = Webhook(test_address(WEBHOOK_ADDRESS), {"a": hub.hostname, "b": linked.hostname})
    yield w
    w.close()


def custom(rid: str, key: str, url: str) -> dict:
    return individual(rid, key, allocationPolicy="custom",
                      customAllocationDefinition={"webhookUrl": url, "apiVersion": "2021-10-01"})


def test_custom_allocation_webhook(hub, linked, webhook):
    key = new_key()
    rid = "custom-1"
    url = f"{webhook.url}/api/alloc?code=functionkey"
    assert dps_rest(hub, "PUT", f"/enrollments/{rid}", custom(rid, key, url)).status_code == 200
    result = provision_sdk(hub, rid, key, payload={"hub": "b", "fw": "1.2"})
    assert result.status == "assigned"
    assert result.registration_state.assigned_hub == linked.hostname
    # PYDEV hands the payload back as the JSON text DPS sent.
    assert json.loads(result.registration_state.response_payload) == {"welcome": "b"}
    twin = linked.registry_manager().get_twin(rid)
    assert twin.tags == {"allocatedBy": "webhook"}
    assert twin.properties.desired["region"] == "b"

    path, body = webhook.calls[-1]
    assert path == "/api/alloc?code=functionkey", "the URL exactly as stored, with its key"
    assert body["individualEnrollment"]["registrationId"] == rid
    assert body["individualEnrollment"]["attestation"] == {"type": "symmetricKey"}, "no keys"
    assert body["deviceRuntimeContext"]["registrationId"] == rid
    assert body["deviceRuntimeContext"]["symmetricKey"] == {}
    assert body["deviceRuntimeContext"]["payload"] == {"hub": "b", "fw": "1.2"}
    assert sorted(body["linkedHubs"]) == sorted([hub.hostname, linked.hostname])
    send_to_assigned_hub(linked, result, key, "allocated by webhook")


def test_custom_allocation_retries_a_503_and_reports_a_400(hub, linked, webhook):
    key = new_key()
    flaky = f"{webhook.url}/api/flaky"
    assert dps_rest(hub, "PUT", "/enrollments/custom-flaky", custom("custom-flaky", key, flaky)).status_code == 200
    calls_before = len(webhook.calls)
    result = register_http(hub, "custom-flaky", key, payload={"hub": "a"})
    assert result["status"] == "assigned", result
    assert result["registrationState"]["assignedHub"] == hub.hostname
    assert len(webhook.calls) - calls_before == 2, "one 503, then the retry"

    reject = f"{webhook.url}/api/reject"
    assert dps_rest(hub, "PUT", "/enrollments/custom-no", custom("custom-no", key, reject)).status_code == 200
    result = register_http(hub, "custom-no", key)
    assert result["status"] == "failed", result
    state = result["registrationState"]
    assert state["errorCode"] == 400207
    assert state["errorMessage"] == "Custom allocation failed with status code: 400"
    # The Python SDK reports the failed registration as an error.
    with pytest.raises(Exception) as failed:
        provision_sdk(hub, "custom-no", key)
    assert "failed" in error_chain(failed.value).lower()
    for server in (hub, linked):
        with pytest.raises(Exception):
            server.registry_manager().get_device("custom-no")


def move_to_b_and_register_again(hub, linked, rid: str, key: str, policy: dict):
    """Assigns `rid` to A with an initial twin, changes its twin there, then moves its
    enrollment to B with `policy` and registers again."""
    twin = {"tags": {"stage": "initial"}, "properties": {"desired": {"mode": "initial"}}}
    r = dps_rest(hub, "PUT", f"/enrollments/{rid}",
                 individual(rid, key, allocationPolicy="static", iotHubHostName=hub.hostname, initialTwin=twin))
    assert r.status_code == 200, r.text
    first = provision_sdk(hub, rid, key)
    assert first.registration_state.assigned_hub == hub.hostname
    assert first.registration_state.sub_status == "initialAssignment"
    rm_a = hub.registry_manager()
    current = rm_a.get_twin(rid)
    from azure.iot.hub.models import Twin, TwinProperties

    rm_a.update_twin(rid, Twin(tags={"stage": "used"}, properties=TwinProperties(desired={"mode": "used"})), current.etag)
    moved = individual(rid, key, allocationPolicy="static", iotHubHostName=linked.hostname,
                       initialTwin=twin, reprovisionPolicy=policy)
    r = dps_rest(hub, "PUT", f"/enrollments/{rid}", moved, headers={"If-Match": "*"})
    assert r.status_code == 200, r.text
    return provision_sdk(hub, rid, key)


def test_reprovision_and_migrate_data(hub, linked):
    key = new_key()
    second = move_to_b_and_register_again(hub, linked, "repro-migrate", key,
                                          {"updateHubAssignment": True, "migrateDeviceData": True})
    assert second.registration_state.assigned_hub == linked.hostname
    assert second.registration_state.sub_status == "deviceDataMigrated"
    twin = linked.registry_manager().get_twin("repro-migrate")
    assert twin.tags == {"stage": "used"}
    assert twin.properties.desired["mode"] == "used"
    with pytest.raises(Exception):
        hub.registry_manager().get_device("repro-migrate")
    send_to_assigned_hub(linked, second, key, "migrated")


def test_reprovision_and_reset_to_the_initial_twin(hub, linked):
    key = new_key()
    second = move_to_b_and_register_again(hub, linked, "repro-reset", key,
                                          {"updateHubAssignment": True, "migrateDeviceData": False})
    assert second.registration_state.assigned_hub == linked.hostname
    assert second.registration_state.sub_status == "deviceDataReset"
    twin = linked.registry_manager().get_twin("repro-reset")
    assert twin.tags == {"stage": "initial"}
    assert twin.properties.desired["mode"] == "initial"
    with pytest.raises(Exception):
        hub.registry_manager().get_device("repro-reset")


def test_never_reprovision(hub, linked):
    key = new_key()
    second = move_to_b_and_register_again(hub, linked, "repro-never", key,
                                          {"updateHubAssignment": False, "migrateDeviceData": False})
    assert second.registration_state.assigned_hub == hub.hostname
    assert second.registration_state.sub_status == "reprovisionedToInitialAssignment"
    assert hub.registry_manager().get_twin("repro-never").properties.desired["mode"] == "used"
    with pytest.raises(Exception):
        linked.registry_manager().get_device("repro-never")


class DelayProxy:
    """A TCP proxy that holds every chunk for `delay` seconds, in both directions."""

    def __init__(self, listen: str, target: str, delay: float):
        self.loop = asyncio.new_event_loop()
        self.listen, self.target, self.delay = listen, target, delay
        ready = threading.Event()
        threading.Thread(target=self._run, args=(ready,), daemon=True).start()
        assert ready.wait(10)

    def _run(self, ready):
        asyncio.set_event_loop(self.loop)

        async def pipe(reader, writer):
            try:
                while data := await reader.read(65536):
                    await asyncio.sleep(self.delay)
                    writer.write(data)
                    await writer.drain()
            except (ConnectionError, OSError):
                pass
            finally:
                writer.close()

        async def handle(client_reader, client_writer):
            try:
                server_reader, server_writer = await asyncio.open_connection(self.target, 443)
            except OSError:
                client_writer.close()
                return
            await asyncio.gather(pipe(client_reader, server_writer), pipe(server_reader, client_writer))

        self.server = self.loop.run_until_complete(asyncio.start_server(handle, self.listen, 443))
        ready.set()
        self.loop.run_forever()

    def close(self):
        # Stops accepting; the loop's daemon thread (and any pooled connection) ends with
        # the test process.
        self.loop.call_soon_threadsafe(self.server.close)


def test_lowest_latency_follows_the_measured_round_trips(hub, linked):
    proxy = DelayProxy(test_address(B_SLOW_ADDRESS), linked.address, PROXY_DELAY_S)
    try:
        slow = test_address(B_SLOW_ADDRESS)
        cs = linked.connection_string.replace(f"HostName={linked.hostname}", f"HostName={slow}")
        r = dps_rest(hub, "PUT", f"/dps/linkedHubs/{slow}", {"connectionString": cs})
        assert r.status_code == 200, r.text

        def latencies():
            hubs = {h["name"]: h.get("latencyMs") for h in dps_rest(hub, "GET", "/dps/linkedHubs").json()["value"]}
            return hubs if all(v is not None for v in hubs.values()) and len(hubs) == 3 else None

        measured = wait_for(latencies, what="round trips to every linked hub")
        assert measured[slow] > measured[linked.hostname], measured

        key = new_key()
        r = dps_rest(hub, "PUT", "/enrollments/nearest", individual(
            "nearest", key, allocationPolicy="geoLatency", iotHubs=[linked.hostname, slow]))
        assert r.status_code == 200, r.text
        result = provision_sdk(hub, "nearest", key)
        assert result.registration_state.assigned_hub == linked.hostname, measured
        # Between the DPS's own hub (in process) and the slow path, the own hub is nearer.
        r = dps_rest(hub, "PUT", "/enrollments/nearest-2", individual(
            "nearest-2", key, allocationPolicy="geoLatency", iotHubs=[hub.hostname, slow]))
        assert r.status_code == 200, r.text
        assert register_http(hub, "nearest-2", key)["registrationState"]["assignedHub"] == hub.hostname
    finally:
        dps_rest(hub, "DELETE", f"/dps/linkedHubs/{test_address(B_SLOW_ADDRESS)}")
        proxy.close()
