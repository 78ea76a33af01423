"""Several nodes serving one hub: three `ironhub serve --store postgres://… --nats …` on their own
loopback addresses over one PostgreSQL database (the server scripts/test starts, through
IRONHUB_TEST_POSTGRES_URL) and one nats-server (started by this module). Real clients judge it: a
device registered through node 1 connects with the Python device SDK to node 2; a C2D message, a
direct method and a desired patch sent through node 1 reach it; its telemetry is read through
node 3's event stream. The nodes share the hub's keys and CA, so one CA file and one owner key
serve every node; `ironhub info --store` reads the hub from the database.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import tempfile
import urllib.parse
from pathlib import Path

import pytest
from azure.iot.device import IoTHubDeviceClient, Message, MethodResponse
from azure.iot.hub.models import CloudToDeviceMethod, Twin, TwinProperties

from conftest import IronHub, ironhub_bin, require_tool, run_cli, test_address
from services import nats_server
from test_device import device_key, stored_events, wait_for

NODE_ADDRESSES = ["127.0.0.239", "127.0.0.240", "127.0.0.241"]
# nats-server shares node 3's address on its own port.
NATS_ADDRESS = "127.0.0.241"
NATS_PORT = 4222
WAIT_S = 30
ALL_ADDRESSES = [test_address(a) for a in NODE_ADDRESSES]


def _postgres_admin_url() -> str:
    url = os.environ.get("IRONHUB_TEST_POSTGRES_URL")
    if not url:
        if os.environ.get("CI"):
            pytest.fail("IRONHUB_TEST_POSTGRES_URL is not set (scripts/test starts a PostgreSQL)", pytrace=False)
        pytest.skip("IRONHUB_TEST_POSTGRES_URL is not set (scripts/test starts a PostgreSQL and sets it)")
    return url


def _with_database(url: str, database: str) -> str:
    parts = urllib.parse.urlsplit(url)
    return urllib.parse.urlunsplit(parts._replace(path=f"/{database}"))


@pytest.fixture(scope="module")
def database():
    """A database of the module's own on the suite's PostgreSQL, dropped at the end."""
    require_tool("psql")
    admin = _postgres_admin_url()
    name = f"ironhub_cluster_{os.getpid()}"

    def psql(sql: str) -> None:
        subprocess.run(["psql", admin, "-v", "ON_ERROR_STOP=1", "-qc", sql], check=True, capture_output=True, timeout=60)

    psql(f"DROP DATABASE IF EXISTS {name}")
    psql(f"CREATE DATABASE {name}")
    yield _with_database(admin, name)
    psql(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


class Node(IronHub):
    """One node of the cluster; `ironhub info` reads the hub from the shared store."""

    def __init__(self, address: str, workdir: Path, store: str, extra_args: list[str]):
        super().__init__(address, workdir, extra_args)
        self.store = store

    def launch(self) -> None:
        """Starts the process without waiting for it (from the main thread: the server dies
        with the thread that started it)."""
        self._deferred = True
        try:
            self.start()
        finally:
            self._deferred = False

    def wait_started(self) -> None:
        """Waits until a launched node listens, then reads the hub."""
        self._wait_ready()
        self.info = self._read_info()

    def _wait_ready(self) -> None:
        if not getattr(self, "_deferred", False):
            super()._wait_ready()

    def _read_info(self) -> dict:
        if getattr(self, "_deferred", False):
            return {}
        proc = run_cli("info", "--store", self.store, "--data-dir", str(self.data_dir), "--json", check=True)
        info = json.loads(proc.stdout)
        # The store keeps the endpoint of the node that wrote it last (the nodes start
        # together); each node answers to its own address, so the test reaches it there.
        host = info["hub"]["hostName"]
        assert host in ALL_ADDRESSES, info
        info["hub"]["hostName"] = self.address
        info["hub"]["connectionString"] = info["hub"]["connectionString"].replace(
            f"HostName={host};", f"HostName={self.address};"
        )
        assert Path(info["tls"]["caCertificate"]).is_file(), info
        return info


@pytest.fixture(scope="module")
def nodes(database):
    """Three nodes started together, each with its data directory, over one database and one
    nats-server."""
    workdir = Path(tempfile.mkdtemp(prefix="ironhub-cluster-"))
    started: list[Node] = []
    saved_bundle = os.environ.get("REQUESTS_CA_BUNDLE")
    try:
        with nats_server(test_address(NATS_ADDRESS), NATS_PORT) as nats_url:
            for i, address in enumerate(NODE_ADDRESSES, start=1):
                node_dir = workdir / f"node-{i}"
                node_dir.mkdir()
                args = ["--store", database, "--nats", nats_url, "--node-id", f"node-{i}"]
                started.append(Node(test_address(address), node_dir, database, args))
            # All at once: the first to reach the empty database creates the schema and the
            # hub's identity, the others must take theirs from it.
            for node in started:
                node.launch()
            for node in started:
                node.wait_started()
            os.environ["REQUESTS_CA_BUNDLE"] = started[0].ca_file
            yield started
            for node in started:
                node._kill(signal.SIGKILL)
    finally:
        for node in started:
            node._kill(signal.SIGKILL)
        if saved_bundle is None:
            os.environ.pop("REQUESTS_CA_BUNDLE", None)
        else:
            os.environ["REQUESTS_CA_BUNDLE"] = saved_bundle
        if os.environ.get("IRONHUB_KEEP_TMP"):
            print(f"kept {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)


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
    import uamqp.authentication.common as uamqp_common

    node1, node2, node3 = nodes
    ca = node1.ca_file
    # uamqp reads its CA bundle from certifi when the client is built (see conftest's
    # `amqp_registry`).
    real = uamqp_common.certifi.where
    uamqp_common.certifi.where = lambda: ca
    try:
        rm = node1.registry_manager()
    finally:
        uamqp_common.certifi.where = real
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
