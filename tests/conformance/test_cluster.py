"""Several nodes serving one hub: three `ironhub serve --store postgres://… --nats …` on their own
loopback addresses over one PostgreSQL database (the server scripts/test starts, through
IRONHUB_TEST_POSTGRES_URL) and one nats-server (started by this module). Real clients judge it: a
device registered through node 1 connects with the Python device SDK to node 2; a C2D message, a
direct method and a desired patch sent through node 1 reach it; its telemetry is read through
node 3's event stream. The nodes share the hub's keys and CA, so one CA file and one owner key
serve every node; `ironhub info --store` reads the hub from the database, and `ironhub migrate
--store` brings a database's schema up to date without a server.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
from azure.iot.device import IoTHubDeviceClient, Message, MethodResponse
from azure.iot.hub.models import CloudToDeviceMethod, Twin, TwinProperties

from cluster_helpers import cluster, fresh_database, postgres_admin_url
from conftest import amqp_registry_manager, ironhub_bin, run_cli, test_address
from services import nats_server
from test_device import device_key, stored_events, wait_for

NODE_ADDRESSES = ["127.0.0.239", "127.0.0.240", "127.0.0.241"]
# nats-server shares node 3's address on its own port.
NATS_ADDRESS = "127.0.0.241"
NATS_PORT = 4222
WAIT_S = 30
ALL_ADDRESSES = [test_address(a) for a in NODE_ADDRESSES]


@pytest.fixture(scope="module")
def database():
    """A database of the module's own on the suite's PostgreSQL, dropped at the end."""
    with fresh_database(postgres_admin_url(), f"ironhub_cluster_{os.getpid()}") as url:
        yield url


@pytest.fixture(scope="module")
def nodes(database):
    """Three nodes started together over one database and one nats-server."""
    with nats_server(test_address(NATS_ADDRESS), NATS_PORT) as nats_url:
        with cluster(database, nats_url, ALL_ADDRESSES) as started:
            yield started


def test_nodes_share_the_hubs_keys_and_ca(nodes):
    owners = {n.connection_string_parts()["SharedAccessKey"] for n in nodes}
    assert len(owners) == 1, "one owner key for the hub"
    cas = {Path(n.ca_file).read_text() for n in nodes}
    assert len(cas) == 1, "one CA for every node"
    # Each node's own registry view is the same hub.
    n1, n2 = nodes[0].registry_manager(), nodes[1].registry_manager()
    n1.create_device_with_sas("shared-dev", None, None, "enabled")
    assert n2.get_device("shared-dev").device_id == "shared-dev"


def test_device_on_node_2_is_reached_through_node_1_and_read_through_node_3(nodes):
    node1, node2, node3 = nodes
    ca = node1.ca_file
    rm = amqp_registry_manager(node1)
    device_id = "cluster-dev"
    key = device_key(rm, device_id)
    client = IoTHubDeviceClient.create_from_connection_string(
        f"HostName={node2.hostname};DeviceId={device_id};SharedAccessKey={key}",
        server_verification_cert=open(ca).read(),
    )
    got: dict[str, list] = {"c2d": [], "patch": [], "method": []}
    client.on_message_received = lambda m: got["c2d"].append(m.data.decode())
    client.on_twin_desired_properties_patch_received = lambda p: got["patch"].append(p)

    def on_method(request):
        got["method"].append(request.name)
        client.send_method_response(MethodResponse.create_from_method_request(request, 200, {"echo": request.payload}))

    client.on_method_request_received = on_method
    client.connect()
    try:
        wait_for(lambda: rm.get_device(device_id).connection_state == "Connected", WAIT_S, "node 1 to see the device connected")
        rm.send_c2d_message(device_id, "hello across nodes")
        wait_for(lambda: got["c2d"] == ["hello across nodes"], WAIT_S, "the C2D message")
        result = rm.invoke_device_method(
            device_id, CloudToDeviceMethod(method_name="reboot", payload={"now": True}, response_timeout_in_seconds=10)
        )
        assert result.status == 200 and result.payload == {"echo": {"now": True}}
        assert got["method"] == ["reboot"]
        twin = rm.get_twin(device_id)
        rm.update_twin(device_id, Twin(properties=TwinProperties(desired={"fan": 3})), twin.etag)
        wait_for(lambda: any(p.get("fan") == 3 for p in got["patch"]), WAIT_S, "the desired patch")
        for i in range(3):
            client.send_message(Message(f"t-{i}"))  # returns once node 2 acknowledged it
    finally:
        client.shutdown()
        rm.amqp_svc_client.disconnect_sync()
    events = stored_events(node3, device_id)
    assert [e["body"] for e in events] == ["t-0", "t-1", "t-2"]


@pytest.mark.parametrize(
    "extra, told",
    [([], "--nats"), (["--nats", "nats://127.0.0.1:1"], "--node-id")],
    ids=["without-nats", "default-node-id"],
)
def test_a_node_that_would_keep_state_in_its_process_is_refused(database, tmp_path, extra, told):
    address = ALL_ADDRESSES[0]
    proc = subprocess.run(
        [
            ironhub_bin(), "serve", "--store", database, "--data-dir", str(tmp_path / "data"),
            "--hostname", address, "--https-listen", f"{address}:0",
            "--mqtt-listen", f"{address}:0", "--amqp-listen", f"{address}:0", *extra,
        ],
        capture_output=True, text=True, timeout=60,
    )
    assert proc.returncode != 0
    assert told in proc.stderr, proc.stderr


def test_migrate_applies_the_schema_once_and_then_reports_it_current():
    with fresh_database(postgres_admin_url(), f"ironhub_cluster_migrate_{os.getpid()}") as url:
        check = run_cli("migrate", "--store", url, "--check")
        assert check.returncode != 0 and "lacks migration(s) 1, " in check.stderr, check.stderr
        first = run_cli("migrate", "--store", url, check=True)
        assert first.stdout.startswith("applied migration(s) 1, "), first.stdout
        again = run_cli("migrate", "--store", url, check=True)
        assert "the schema is current" in again.stdout and "nothing to apply" in again.stdout, again.stdout
        assert "the schema is current" in run_cli("migrate", "--store", url, "--check", check=True).stdout
    wrong = run_cli("migrate", "--store", "mysql://u:secret@db/hub")
    assert wrong.returncode != 0 and "postgres://" in wrong.stderr and "secret" not in wrong.stderr


def test_a_nul_in_a_twin_is_refused_and_changes_nothing(nodes):
    """PostgreSQL's jsonb cannot hold U+0000: the hub refuses it as IoT Hub does (400
    ArgumentInvalid) instead of failing in the database (500)."""
    import requests

    from test_device import sas

    node = nodes[0]
    rm = node.registry_manager()
    rm.create_device_with_sas("nul-dev", None, None, "enabled")
    before = rm.get_twin("nul-dev")
    parts = node.connection_string_parts()
    auth = sas(node.hostname, parts["SharedAccessKey"]) + f"&skn={parts['SharedAccessKeyName']}"
    for body in ({"tags": {"site": "a\u0000b"}}, {"properties": {"desired": {"x": ["\u0000"]}}}):
        r = requests.patch(
            f"https://{node.address}/twins/nul-dev?api-version=2021-04-12", json=body,
            headers={"Authorization": auth, "If-Match": "*"}, verify=node.ca_file, timeout=30,
        )
        assert r.status_code == 400, r.text
        assert r.json()["Message"].startswith("ErrorCode:ArgumentInvalid;"), r.text
    after = rm.get_twin("nul-dev")
    assert (after.etag, after.version, after.tags) == (before.etag, before.version, before.tags)
