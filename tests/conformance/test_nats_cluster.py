"""Two nodes (`ironhub serve --store postgres://… --nats URL,URL,URL --nats-replicas 3`) on a
JetStream cluster of three nats-servers of this module's own. Every stream and bucket ironhub
creates keeps three copies; telemetry and calls between the nodes (the device bus) work; with
one nats-server killed (SIGKILL, the one leading the telemetry stream) the telemetry a node
acknowledged (PUBACK) is still read back, the hub keeps accepting telemetry (two of three
copies are a quorum) and direct methods still cross nodes; and once the server is back, all of
it is still there.
"""

from __future__ import annotations

import os
import ssl
import threading

import pytest
import requests
from azure.iot.device import IoTHubDeviceClient, MethodResponse
from azure.iot.hub.models import CloudToDeviceMethod

from cluster_helpers import cluster, fresh_database, postgres_admin_url
from conftest import test_address
from services import NatsCluster
from test_cluster_failures import create_device
from test_device import sas, stored_events, wait_for

NATS_ADDRESSES = [test_address(a) for a in ("127.0.0.25", "127.0.0.26", "127.0.0.27")]
NODE_ADDRESSES = [test_address(a) for a in ("127.0.0.28", "127.0.0.29")]
# A killed server's streams elect new leaders among their other replicas: seconds on a quiet
# machine, longer when the suite's other modules share its 2 cores.
WAIT_S = 90
API = "api-version=2021-04-12"


@pytest.fixture(scope="module")
def nats():
    with NatsCluster(NATS_ADDRESSES) as servers:
        yield servers


@pytest.fixture(scope="module")
def nodes(nats):
    with fresh_database(postgres_admin_url(), f"ironhub_jscluster_{os.getpid()}") as database:
        with cluster(database, nats.url, NODE_ADDRESSES, prefix="ironhub-jscluster-",
                     extra_args=["--nats-replicas", "3"]) as started:
            yield started


def streams(nats: NatsCluster, i: int) -> list[dict]:
    """The streams server `i` holds a copy of."""
    report = nats.jsz(i)
    return [s for account in report.get("account_details", []) for s in account.get("stream_detail", [])]


class Telemetry:
    """A device sending telemetry at QoS 1 with paho through one node; `send` waits for the
    PUBACK within a bound and says whether it came."""

    def __init__(self, node, device_id: str, key: str):
        import paho.mqtt.client as paho

        self.c = paho.Client(client_id=device_id, protocol=paho.MQTTv311)
        self.c.username_pw_set(f"{node.hostname}/{device_id}/?{API}", sas(f"{node.hostname}/devices/{device_id}", key))
        self.c.tls_set_context(ssl.create_default_context(cafile=node.ca_file))
        connected = threading.Event()
        self.c.on_connect = lambda client, userdata, flags, rc: rc == 0 and connected.set()
        self.c.connect(node.address, 8883, keepalive=30)
        self.c.loop_start()
        self.device_id = device_id
        if not connected.wait(WAIT_S):
            self.close()
            raise AssertionError(f"{device_id}: no CONNACK from {node.address}")

    def send(self, body: str) -> None:
        info = self.c.publish(f"devices/{self.device_id}/messages/events/", body, qos=1)
        info.wait_for_publish(timeout=WAIT_S)
        assert info.is_published(), f"{body}: no PUBACK within {WAIT_S} s"

    def close(self) -> None:
        self.c.disconnect()
        self.c.loop_stop()


def test_replicated_streams_survive_a_nats_server_killed(nodes, nats):
    node1, node2 = nodes
    telemetry_key = create_device(node1, "js-telemetry")
    method_key = create_device(node1, "js-method")
    device = IoTHubDeviceClient.create_from_connection_string(
        f"HostName={node2.hostname};DeviceId=js-method;SharedAccessKey={method_key}",
        server_verification_cert=open(node2.ca_file).read(),
    )
    device.on_method_request_received = lambda request: device.send_method_response(
        MethodResponse.create_from_method_request(request, 200, {"name": request.name})
    )
    device.connect()
    sender = Telemetry(node1, "js-telemetry", telemetry_key)
    rm = node1.registry_manager()
    sent: list[str] = []

    def send(n: int, tag: str) -> None:
        for i in range(n):
            sender.send(f"{tag}-{i}")
            sent.append(f"{tag}-{i}")

    def call(name: str) -> None:
        # Through node 1's REST API to the device connected through node 2: the bus.
        result = rm.invoke_device_method(
            "js-method", CloudToDeviceMethod(method_name=name, payload={}, response_timeout_in_seconds=10)
        )
        assert result.status == 200 and result.payload == {"name": name}, result

    def stored() -> list[str]:
        return [e["body"] for e in stored_events(node2, "js-telemetry")]

    last: list[str] = []

    def readable() -> bool:
        # While the cluster elects new leaders a read may fail: it is retried within the bound.
        try:
            got = stored()
        except (AssertionError, requests.RequestException) as e:
            last[:] = [f"the read failed: {e}"]
            return False
        last[:] = [f"read {len(got)} of {len(sent)}: missing {[m for m in sent if m not in got]}"]
        return got == sent

    def wait_readable(what: str) -> None:
        try:
            wait_for(readable, WAIT_S, what)
        except AssertionError as e:
            raise AssertionError(f"{e}; the last try: {last[0] if last else 'none'}") from None

    try:
        send(5, "before")
        call("before")
        assert stored() == sent
        # Every stream and bucket ironhub created has three copies, one on each server.
        created = streams(nats, 0)
        assert created, nats.jsz(0)
        for s in created:
            assert s["config"]["num_replicas"] == 3, s["config"]
            assert len(s["cluster"].get("replicas", [])) == 2, s["cluster"]
        # Kill the server leading the stream that holds the telemetry.
        events = max(created, key=lambda s: s["state"]["messages"])
        assert events["state"]["messages"] >= 5, events
        leader = int(events["cluster"]["leader"].removeprefix("n")) - 1
        nats.kill9(leader)
        try:
            wait_readable("the acknowledged telemetry read with a nats-server down")
            send(5, "without")
            call("without")
            wait_readable("the telemetry sent with a nats-server down")
        finally:
            nats.start(leader)
        send(2, "after")
        wait_readable("every acknowledged message read back")
        call("after")
    finally:
        sender.close()
        device.shutdown()
