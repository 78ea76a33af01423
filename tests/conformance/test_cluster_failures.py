"""What an operator's failures do to a cluster of three nodes (`ironhub serve --store postgres://…
--nats … --node-id …`), with a PostgreSQL and a nats-server of this module's own, which the tests
stop and start:

- a node killed with SIGKILL while devices send telemetry at QoS 1 through it and through the
  others: every message a node acknowledged (PUBACK) is read back afterwards through a surviving
  node, and the killed node's devices carry on through another node;
- a node killed with SIGKILL while a service sends cloud-to-device messages to devices
  connected through it: every accepted message is delivered (one the killed node had locked
  comes back once its heartbeat runs out), and none completed before is delivered again;
- a node killed while its job runner waits on a device: once its heartbeat runs out, another
  node runs the job on that device again, and the job completes;
- PostgreSQL restarted under running nodes: meanwhile requests get a prompt 503
  (`ServiceUnavailable`) and devices a CONNACK "server unavailable", neither a hang nor a 500;
  afterwards everything works again, without restarting a node;
- nats-server restarted: telemetry acknowledged before is still there (JetStream keeps it on
  disk), and the nodes reconnect by themselves, so telemetry, C2D and direct methods work again.
"""

from __future__ import annotations

import os
import ssl
import threading
import time

import pytest
import requests
from azure.iot.device import IoTHubDeviceClient, Message, MethodResponse
from azure.iot.hub.models import CloudToDeviceMethod

from cluster_helpers import cluster, fresh_database
from conftest import amqp_registry_manager, test_address
from services import NatsServer, PostgresServer
from test_device import sas, stored_events, wait_for

NODE_ADDRESSES = [test_address(a) for a in ("127.0.0.41", "127.0.0.42", "127.0.0.43")]
NATS_ADDRESS = test_address("127.0.0.44")
WAIT_S = 30
API = "api-version=2021-04-12"


@pytest.fixture(scope="module")
def postgres():
    with PostgresServer() as server:
        yield server


@pytest.fixture(scope="module")
def nats():
    with NatsServer(NATS_ADDRESS, 4222) as server:
        yield server


@pytest.fixture(scope="module")
def nodes(postgres, nats):
    with fresh_database(postgres.admin_url, f"ironhub_failures_{os.getpid()}") as database:
        with cluster(database, nats.url, NODE_ADDRESSES, prefix="ironhub-cluster-failures-") as started:
            yield started


def owner_auth(node) -> dict:
    parts = node.connection_string_parts()
    return {"Authorization": sas(node.hostname, parts["SharedAccessKey"]) + f"&skn={parts['SharedAccessKeyName']}"}


def create_device(node, device_id: str) -> str:
    r = requests.put(f"https://{node.address}/devices/{device_id}?{API}", json={"deviceId": device_id},
                     headers=owner_auth(node), verify=node.ca_file, timeout=30)
    assert r.status_code == 200, r.text
    return r.json()["authentication"]["symmetricKey"]["primaryKey"]


class Sender(threading.Thread):
    """A device sending telemetry at QoS 1 with paho, one message at a time, each waited for;
    records what was acknowledged (PUBACK). When its node dies it connects to the next live one."""

    def __init__(self, device_id: str, key: str, nodes: list, first: int):
        super().__init__(daemon=True)
        self.device_id, self.key, self.nodes, self.at = device_id, key, nodes, first
        self.acked: list[str] = []
        self.nodes_used: list[int] = []
        self.done = threading.Event()
        self.error: Exception | None = None

    def connect(self, node):
        import paho.mqtt.client as paho

        c = paho.Client(client_id=self.device_id, clean_session=False, protocol=paho.MQTTv311)
        c.username_pw_set(f"{node.hostname}/{self.device_id}/?{API}", sas(f"{node.hostname}/devices/{self.device_id}", self.key))
        ctx = ssl.create_default_context(cafile=node.ca_file)
        c.tls_set_context(ctx)
        connected = threading.Event()
        c.on_connect = lambda client, userdata, flags, rc: rc == 0 and connected.set()
        c.connect(node.address, 8883, keepalive=30)
        c.loop_start()
        if not connected.wait(WAIT_S):
            c.loop_stop()
            raise AssertionError(f"{self.device_id}: no CONNACK from {node.address}")
        return c

    @staticmethod
    def node_dies(node, within_s: float = 5.0) -> bool:
        """Whether `node` is (or within `within_s` is) killed: `kill9` clears `proc` only once
        the process is reaped, so a client may see the connection drop a moment before."""
        deadline = time.monotonic() + within_s
        while node.proc is not None:
            if time.monotonic() > deadline:
                return False
            time.sleep(0.05)
        return True

    def run(self):
        try:
            seq = 0
            while not self.done.is_set():
                node = self.nodes[self.at]
                if node.proc is None:  # killed: a load balancer would send it to another node
                    self.at = (self.at + 1) % len(self.nodes)
                    continue
                self.nodes_used.append(self.at)
                c = self.connect(node)
                try:
                    while not self.done.is_set() and node.proc is not None:
                        body = f"{self.device_id}-{seq}"
                        seq += 1
                        try:
                            info = c.publish(f"devices/{self.device_id}/messages/events/", body, qos=1)
                            info.wait_for_publish(timeout=5)
                            failure = None if info.is_published() else f"{body} not acknowledged within 5 s"
                        except (RuntimeError, ValueError) as e:
                            # paho raises once it has seen the connection drop.
                            failure = f"{body}: {e}"
                        if failure is None:
                            self.acked.append(body)
                        elif not self.node_dies(node):
                            raise AssertionError(f"{self.device_id}: {failure}")
                finally:
                    c.disconnect()
                    c.loop_stop()
        except Exception as e:  # reported by the test
            self.error = e


def test_a_killed_node_loses_no_acknowledged_telemetry_and_its_devices_move_on(nodes):
    node1, node2, node3 = nodes
    senders = []
    for i in range(6):
        device_id = f"kill9-{i}"
        senders.append(Sender(device_id, create_device(node2, device_id), nodes, first=i % 3))
    for s in senders:
        s.start()
    try:
        wait_for(lambda: all(len(s.acked) >= 5 for s in senders), WAIT_S, "telemetry through every node")
        node1.kill9()
        before = {s.device_id: len(s.acked) for s in senders}
        try:
            # Bounded, but not by the 30 s a single step gets: a moved device waits out its
            # last PUBLISH to the dead node (5 s) and then its CONNACK from another node.
            wait_for(lambda: all(len(s.acked) >= before[s.device_id] + 5 for s in senders), 3 * WAIT_S,
                     "telemetry after the kill, the killed node's devices through another node")
        except AssertionError as e:
            state = [(s.device_id, before[s.device_id], len(s.acked), s.nodes_used, s.error) for s in senders]
            raise AssertionError(f"{e}: (device, acked before, acked now, nodes used, error): {state}") from None
    finally:
        for s in senders:
            s.done.set()
        for s in senders:
            s.join(WAIT_S)
        if node1.proc is None:  # back under its id for the tests after this one, whatever happened
            node1.start()
    for s in senders:
        assert s.error is None, s.error
    moved = [s for s in senders if s.nodes_used[0] == 0]
    assert moved and all(len(s.nodes_used) > 1 for s in moved), [s.nodes_used for s in senders]
    for s in senders:
        stored = [e["body"] for e in stored_events(node3, s.device_id)]
        lost = [b for b in s.acked if b not in stored]
        assert not lost, f"{s.device_id}: acknowledged but not stored: {lost}"
    # The killed node came back under its id (above) and serves again.
    assert requests.get(f"https://{node1.address}/devices/kill9-0?{API}", headers=owner_auth(node1),
                        verify=node1.ca_file, timeout=30).status_code == 200


class C2dDevice:
    """A device receiving cloud-to-device messages at QoS 1 with paho (each PUBACK completes
    its message); records every receipt with the node it came through. `move_to` connects it
    through another node, as a device does when its node dies."""

    def __init__(self, device_id: str, key: str):
        self.device_id, self.key = device_id, key
        self.received: list[tuple[str, int]] = []
        self.lock = threading.Lock()
        self.client = None
        self.at: int | None = None

    def bodies(self) -> list[str]:
        with self.lock:
            return [body for body, _ in self.received]

    def move_to(self, nodes: list, at: int) -> None:
        import paho.mqtt.client as paho

        self.drop()
        node = nodes[at]
        c = paho.Client(client_id=self.device_id, clean_session=False, protocol=paho.MQTTv311)
        c.username_pw_set(f"{node.hostname}/{self.device_id}/?{API}", sas(f"{node.hostname}/devices/{self.device_id}", self.key))
        c.tls_set_context(ssl.create_default_context(cafile=node.ca_file))
        subscribed = threading.Event()

        def on_connect(client, userdata, flags, rc):
            if rc == 0:
                client.subscribe(f"devices/{self.device_id}/messages/devicebound/#", qos=1)

        def on_message(client, userdata, msg):
            with self.lock:
                self.received.append((msg.payload.decode(), at))

        c.on_connect = on_connect
        c.on_subscribe = lambda *args: subscribed.set()
        c.on_message = on_message
        c.connect(node.address, 8883, keepalive=30)
        c.loop_start()
        self.client, self.at = c, at
        if not subscribed.wait(WAIT_S):
            raise AssertionError(f"{self.device_id}: not subscribed through {node.address}")

    def drop(self) -> None:
        if self.client is not None:
            self.client.disconnect()
            self.client.loop_stop()
            self.client = None


def c2d_queue_depth(node, device_id: str) -> int:
    r = requests.get(f"https://{node.address}/devices/{device_id}?{API}", headers=owner_auth(node),
                     verify=node.ca_file, timeout=30)
    assert r.status_code == 200, r.text
    return r.json()["cloudToDeviceMessageCount"]


@pytest.mark.timeout(300)  # the killed node's locks are released only when its heartbeat runs out
def test_c2d_sent_while_a_node_is_killed_is_delivered_and_what_was_completed_never_again(nodes):
    """A service keeps sending cloud-to-device messages (AMQP, through node 2) to devices, some
    connected through node 1, while node 1 is killed with SIGKILL. Every accepted message is
    delivered; one node 1 had delivered but not settled comes back once its lock is released
    (node 1's heartbeat runs out): IoT Hub's at-least-once. One completed before the kill is
    never delivered again, and at the end every queue is empty."""
    node1, node2, node3 = nodes
    devices = [C2dDevice(f"c2d-kill9-{i}", "") for i in range(4)]
    for i, d in enumerate(devices):
        d.key = create_device(node2, d.device_id)
        d.move_to(nodes, i % 3)
    on_node1 = [d for d in devices if d.at == 0]
    assert on_node1
    rm = amqp_registry_manager(node2)
    accepted: dict[str, list[str]] = {d.device_id: [] for d in devices}
    try:
        # Completed before the kill: received, and gone from every queue.
        for d in devices:
            for n in range(3):
                body = f"{d.device_id}-before-{n}"
                rm.send_c2d_message(d.device_id, body)
                accepted[d.device_id].append(body)
        wait_for(lambda: all(set(accepted[d.device_id]) <= set(d.bodies()) for d in devices), WAIT_S,
                 "the messages before the kill")
        wait_for(lambda: all(c2d_queue_depth(node2, d.device_id) == 0 for d in devices), WAIT_S,
                 "the messages before the kill to be completed")
        completed_before = {d.device_id: list(accepted[d.device_id]) for d in devices}

        # Sends go on across the kill: up to 20 a device until node 1 is killed, then 10 more
        # (under the queue depth of 50 however slowly the devices drain).
        errors: list[Exception] = []
        sent_all, killed = threading.Event(), threading.Event()

        def send():
            try:
                for n in range(20):
                    if killed.is_set():
                        break
                    for d in devices:
                        rm.send_c2d_message(d.device_id, f"{d.device_id}-during-{n}")
                        accepted[d.device_id].append(f"{d.device_id}-during-{n}")
                killed.wait(WAIT_S)
                for n in range(10):
                    for d in devices:
                        rm.send_c2d_message(d.device_id, f"{d.device_id}-after-{n}")
                        accepted[d.device_id].append(f"{d.device_id}-after-{n}")
            except Exception as e:  # reported by the test
                errors.append(e)
            finally:
                sent_all.set()

        sender = threading.Thread(target=send, daemon=True)
        sender.start()
        wait_for(lambda: all(sum("-during-" in b for b in d.bodies()) >= 2 for d in on_node1), WAIT_S,
                 "messages through node 1 before it is killed")
        node1.kill9()
        killed.set()
        for d in on_node1:
            d.move_to(nodes, 2)
        assert sent_all.wait(WAIT_S * 2), "the sends did not finish"
        sender.join(WAIT_S)
        assert not errors, errors
        assert all(sum("-after-" in b for b in accepted[d.device_id]) == 10 for d in devices), accepted
        # A message node 1 delivered but had not settled when it died is locked by it: node 1's
        # heartbeat (30 s) runs out, a surviving node releases its locks, and the device's
        # session (polled every 15 s) delivers it again; then every queue is empty.
        wait_for(lambda: all(set(accepted[d.device_id]) <= set(d.bodies()) for d in devices), 100,
                 "every accepted message delivered")
        wait_for(lambda: all(c2d_queue_depth(node3, d.device_id) == 0 for d in devices), 100,
                 "every queue to be empty")
    finally:
        rm.amqp_svc_client.disconnect_sync()
        for d in devices:
            d.drop()
        if node1.proc is None:
            node1.start()
    for d in devices:
        with d.lock:
            received = list(d.received)
        bodies = [b for b, _ in received]
        assert set(bodies) == set(accepted[d.device_id]), (d.device_id, bodies)
        for body in completed_before[d.device_id]:
            assert bodies.count(body) == 1, f"{d.device_id}: {body} completed before the kill, delivered again"
        for body in {b for b in bodies if bodies.count(b) > 1}:
            first = next(at for b, at in received if b == body)
            assert first == 0, f"{d.device_id}: {body} delivered twice, first through a node that lived"


def job_manager(node):
    from azure.iot.hub import IoTHubJobManager

    manager = IoTHubJobManager.from_connection_string(node.connection_string)
    manager.protocol.config.connection.verify = node.ca_file
    return manager


@pytest.mark.timeout(300)  # the killed node's claim is handed over only when its heartbeat runs out
def test_a_job_device_left_running_by_a_killed_node_is_run_again_by_another(nodes):
    """A method job created through node 1 (whose runner starts it at once) calls a device
    connected through node 2, which does not answer the first call; node 1 is killed meanwhile.
    Once its heartbeat runs out, another node runs the job on the device again, which answers:
    the job completes long before its maximum time, with the device called twice (the call in
    flight when its node died is the one IoT Hub-style at-least-once repeats)."""
    from azure.iot.hub.models import JobRequest

    node1, node2, _ = nodes
    device_id = "job-kill9"
    key = create_device(node2, device_id)
    calls: list[str] = []
    client = IoTHubDeviceClient.create_from_connection_string(
        f"HostName={node2.hostname};DeviceId={device_id};SharedAccessKey={key}",
        server_verification_cert=open(node2.ca_file).read(),
    )

    def on_method(request):
        calls.append(request.name)
        if len(calls) > 1:
            client.send_method_response(MethodResponse.create_from_method_request(request, 200, {"n": len(calls)}))

    client.on_method_request_received = on_method
    client.connect()
    job_id = f"kill9-job-{os.getpid()}"
    try:
        job_manager(node1).create_scheduled_job(job_id, JobRequest(
            job_id=job_id, type="scheduleDeviceMethod", query_condition=f"deviceId = '{device_id}'",
            cloud_to_device_method=CloudToDeviceMethod(
                method_name="reboot", payload={}, response_timeout_in_seconds=120, connect_timeout_in_seconds=0),
            max_execution_time_in_seconds=3600,
        ))
        wait_for(lambda: len(calls) == 1, WAIT_S, "the job's first call")
        node1.kill9()
        jm = job_manager(node2)
        wait_for(lambda: jm.get_scheduled_job(job_id).status == "completed", 100,
                 "the job completed by a surviving node")
    finally:
        client.shutdown()
        if node1.proc is None:
            node1.start()
    assert calls == ["reboot", "reboot"], calls
    stats = jm.get_scheduled_job(job_id).device_job_statistics
    assert (stats.device_count, stats.succeeded_count, stats.failed_count) == (1, 1, 0)


def test_postgres_restarted_under_the_nodes(nodes, postgres):
    node1, node2, _ = nodes
    key = create_device(node1, "pg-outage")
    postgres.stop()
    try:
        started = time.monotonic()
        r = requests.get(f"https://{node2.address}/devices/pg-outage?{API}", headers=owner_auth(node2),
                         verify=node2.ca_file, timeout=30)
        assert time.monotonic() - started < 20, "the request waited on the database too long"
        assert r.status_code == 503, (r.status_code, r.text)
        assert r.json()["Message"].startswith("ErrorCode:ServiceUnavailable;"), r.text
        # A device that must be authenticated against the store is told the same, promptly.
        import paho.mqtt.client as paho

        c = paho.Client(client_id="pg-outage", protocol=paho.MQTTv311)
        c.username_pw_set(f"{node2.hostname}/pg-outage/?{API}", sas(f"{node2.hostname}/devices/pg-outage", key))
        c.tls_set_context(ssl.create_default_context(cafile=node2.ca_file))
        answer = []
        got = threading.Event()
        c.on_connect = lambda client, userdata, flags, rc: (answer.append(rc), got.set())
        c.connect(node2.address, 8883, keepalive=30)
        c.loop_start()
        try:
            assert got.wait(20), "no CONNACK while the database is down"
        finally:
            c.loop_stop()
        assert answer == [paho.CONNACK_REFUSED_SERVER_UNAVAILABLE], answer
    finally:
        postgres.start()

    def works() -> bool:
        r = requests.get(f"https://{node2.address}/devices/pg-outage?{API}", headers=owner_auth(node2),
                         verify=node2.ca_file, timeout=30)
        return r.status_code == 200

    wait_for(works, WAIT_S, "node 2 to use the database again")
    create_device(node1, "pg-after")
    client = IoTHubDeviceClient.create_from_connection_string(
        f"HostName={node2.hostname};DeviceId=pg-outage;SharedAccessKey={key}",
        server_verification_cert=open(node2.ca_file).read(),
    )
    client.connect()
    try:
        client.send_message(Message("after the outage"))
    finally:
        client.shutdown()
    assert [e["body"] for e in stored_events(node1, "pg-outage")] == ["after the outage"]


def test_nats_restarted_under_the_nodes(nodes, nats):
    node1, node2, node3 = nodes
    key = create_device(node1, "nats-outage")
    client = IoTHubDeviceClient.create_from_connection_string(
        f"HostName={node2.hostname};DeviceId=nats-outage;SharedAccessKey={key}",
        server_verification_cert=open(node2.ca_file).read(),
    )
    client.connect()
    try:
        for i in range(3):
            client.send_message(Message(f"before-{i}"))
    finally:
        client.shutdown()
    nats.stop()
    nats.start()

    def stored() -> list:
        try:
            return [e["body"] for e in stored_events(node3, "nats-outage")]
        except (AssertionError, requests.RequestException):
            return []

    wait_for(lambda: stored() == ["before-0", "before-1", "before-2"], WAIT_S, "the telemetry kept by JetStream")

    rm = amqp_registry_manager(node1)
    got: dict[str, list] = {"c2d": [], "method": []}
    client = IoTHubDeviceClient.create_from_connection_string(
        f"HostName={node2.hostname};DeviceId=nats-outage;SharedAccessKey={key}",
        server_verification_cert=open(node2.ca_file).read(),
    )
    client.on_message_received = lambda m: got["c2d"].append(m.data.decode())

    def on_method(request):
        got["method"].append(request.name)
        client.send_method_response(MethodResponse.create_from_method_request(request, 200, {"ok": True}))

    client.on_method_request_received = on_method
    client.connect()
    try:
        client.send_message(Message("after"))
        rm.send_c2d_message("nats-outage", "c2d after")
        wait_for(lambda: got["c2d"] == ["c2d after"], WAIT_S, "the C2D message after the restart")
        result = rm.invoke_device_method(
            "nats-outage", CloudToDeviceMethod(method_name="ping", payload={}, response_timeout_in_seconds=10)
        )
        assert result.status == 200 and result.payload == {"ok": True}
    finally:
        client.shutdown()
        rm.amqp_svc_client.disconnect_sync()
    assert stored() == ["before-0", "before-1", "before-2", "after"]
