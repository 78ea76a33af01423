"""Moving a hub: an embedded hub filled through the real SDKs (service SDK: a SAS device, an
X.509 device, twin tags and desired properties, a queued cloud-to-device message, a DPS
enrollment; device SDK: telemetry and reported properties) is stopped, copied by
`ironhub migrate --from DATA_DIR --to postgres://… --nats nats://…` into a database and a
nats-server of this module's own, and a node started on them serves it: the devices authenticate
with their old keys and certificate, the twins read back with their versions, the device receives
the queued message, `azure-eventhub` reads the old telemetry with its enqueued times, and DPS
registers against the moved enrollment. Bad input (a URL that is no PostgreSQL one, a data
directory a running server holds, a target that is not empty) fails clearly and writes nothing.

Besides the counts, what moved is checked through real clients on the node: a module's twin and
a configuration (service SDK), a finished job (`IoTHubJobManager`), a verified CA certificate (a
CA-signed X.509 device connects), a route (telemetry reaches its stream endpoint), a persistent
MQTT session (paho reconnects with clean session 0 without subscribing and still receives a
cloud-to-device message), feedback a device's completion queued before the move (the service
SDK's feedback receiver), and a DPS registration made before the move (its registration record).
A move that stopped short (here: the store copied, the telemetry not) is completed with `--resume`,
which skips what the target holds and duplicates nothing."""

from __future__ import annotations

import os
import ssl
import threading
from datetime import datetime, timezone
from pathlib import Path

import pytest
from azure.iot.device import IoTHubDeviceClient, Message, ProvisioningDeviceClient, X509
from azure.iot.deviceprovisioning import DeviceProvisioningClient
from azure.iot.hub import IoTHubConfigurationManager, IoTHubHttpRuntimeManager, IoTHubJobManager
from azure.iot.hub.models import Configuration, ConfigurationContent, JobRequest, Twin, TwinProperties

from conftest import IronHub, amqp_registry_manager, run_cli, server_workdir, serving, test_address
from cluster_helpers import cluster, fresh_database, postgres_admin_url
from dps_helpers import (dps_info, make_root, make_self_signed, make_signed, new_key, sas, sha1_thumbprint,
                         wait_for)
from routing_helpers import rest, stream_events
from services import nats_server
from test_eventhub import receive

ADDRESS = test_address("127.0.0.17")
NATS_ADDRESS = test_address("127.0.0.18")
NATS_PORT = 4222
WAIT_S = 30


def ca_pem(path: str) -> str:
    with open(path) as f:
        return f.read()


def sas_client(hub, device_id: str, key: str, ca_file: str) -> IoTHubDeviceClient:
    client = IoTHubDeviceClient.create_from_connection_string(
        f"HostName={hub.hostname};DeviceId={device_id};SharedAccessKey={key}",
        server_verification_cert=ca_pem(ca_file), connection_retry=False)
    client.connect()
    return client


def migrate(*args: str):
    return run_cli("migrate", *args, timeout=120)


def table(stdout: str) -> dict:
    """`ironhub migrate`'s counts: kind → [read, written, counted]."""
    return {line[:52].strip(): line[52:].split() for line in stdout.splitlines()[1:] if len(line) > 52}


def verified(manager, hub):
    """A service SDK manager (msrest) that trusts `hub`'s CA."""
    manager.protocol.config.connection.verify = hub.ca_file
    return manager


def mqtt_session(hub, device_id: str, key: str, ca_file: str, subscribe: bool):
    """A paho client of `device_id` with clean session 0, connected (and, with `subscribe`,
    subscribed to its cloud-to-device topic); returns it and the messages it receives."""
    import paho.mqtt.client as paho

    c = paho.Client(client_id=device_id, clean_session=False, protocol=paho.MQTTv311)
    c.username_pw_set(f"{hub.hostname}/{device_id}/?api-version=2021-04-12",
                      sas(f"{hub.hostname}/devices/{device_id}", key))
    c.tls_set_context(ssl.create_default_context(cafile=ca_file))
    ready, received = threading.Event(), []

    def on_connect(client, userdata, flags, rc):
        assert rc == 0, rc
        if subscribe:
            client.subscribe(f"devices/{device_id}/messages/devicebound/#", qos=1)
        else:
            ready.set()

    c.on_connect = on_connect
    c.on_subscribe = lambda *args: ready.set()
    c.on_message = lambda client, userdata, msg: received.append(msg)
    c.connect(hub.address, 8883, keepalive=30)
    c.loop_start()
    assert ready.wait(WAIT_S), f"{device_id}: not connected (or subscribed) to {hub.address}"
    return c, received


def close(c) -> None:
    c.disconnect()
    c.loop_stop()


def fill_more(old, tmp_path, rm) -> dict:
    """What the counts alone would not show is right: a module with a twin, a configuration, a
    finished job, a verified CA with a device it signs, a route to a stream endpoint, a
    persistent MQTT session, feedback waiting for the service and a DPS registration. Returns
    what the checks after the move need."""
    rm.create_module_with_sas("sas-dev", "mod1", None, None, None)
    rm.update_module_twin("sas-dev", "mod1", Twin(properties=TwinProperties(desired={"mode": "eco"})), "*")
    cm = verified(IoTHubConfigurationManager.from_connection_string(old.connection_string), old)
    cm.create_configuration(Configuration(
        id="moved-config", priority=5, target_condition="tags.site='nowhere'", labels={"team": "a"},
        content=ConfigurationContent(device_content={"properties.desired.cfg": {"x": 1}})))
    jm = verified(IoTHubJobManager.from_connection_string(old.connection_string), old)
    jm.create_scheduled_job("moved-job", JobRequest(
        job_id="moved-job", type="scheduleUpdateTwin", query_condition="deviceId = 'x509-dev'",
        start_time=datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"), max_execution_time_in_seconds=60,
        update_twin=Twin(etag="*", tags={"job": "done"})))
    wait_for(lambda: jm.get_scheduled_job("moved-job").status == "completed", timeout=WAIT_S, what="the job")

    # A verified CA (uploaded verified, as `az iot hub certificate create --verified` does).
    make_root(tmp_path, "moved-root", "moved-root")
    r = rest(old, "PUT", "/certificates/moved-root",
             json={"properties": {"certificate": (tmp_path / "moved-root.pem").read_text(), "isVerified": True}})
    assert r.status_code in (200, 201), r.text
    rm.create_device_with_certificate_authority("ca-dev", "enabled")
    make_signed(tmp_path, "ca-dev", "ca-dev", "moved-root")

    # A stream endpoint and a route to it.
    for args in (("message-endpoint", "create", "--endpoint-name", "moved-ep", "--endpoint-type", "eventhub"),
                 ("message-route", "create", "--route-name", "moved-route", "--source", "DeviceMessages",
                  "--endpoint-name", "moved-ep", "--condition", "level = 'routed'")):
        run_cli("hub", *args, "--data-dir", str(old.data_dir), check=True)

    # A persistent MQTT session, subscribed, then gone.
    session_key = rm.create_device_with_sas("session-dev", None, None, "enabled") \
        .authentication.symmetric_key.primary_key
    c, _ = mqtt_session(old, "session-dev", session_key, old.ca_file, subscribe=True)
    close(c)

    # Feedback: a message with ack=full that its device completes; nobody reads the feedback.
    fb_key = rm.create_device_with_sas("fb-dev", None, None, "enabled").authentication.symmetric_key.primary_key
    service = amqp_registry_manager(old)
    service.send_c2d_message("fb-dev", "ack-me", {"iothub-ack": "full", "messageId": "fb-message"})
    service.amqp_svc_client.disconnect_sync()
    device = sas_client(old, "fb-dev", fb_key, old.ca_file)
    try:
        assert device.receive_message(timeout=WAIT_S) is not None
    finally:
        device.shutdown()
    wait_for(lambda: rm.get_device("fb-dev").cloud_to_device_message_count == 0, timeout=WAIT_S,
             what="the completion")

    # A DPS registration (its record and operation) before the move.
    dps = DeviceProvisioningClient.from_connection_string(
        dps_info(old)["serviceConnectionString"], connection_verify=old.ca_file)
    key = new_key()
    dps.enrollment.create_or_update(id="registered-before", enrollment={
        "registrationId": "registered-before",
        "attestation": {"type": "symmetricKey", "symmetricKey": {"primaryKey": key, "secondaryKey": new_key()}},
    })
    result = ProvisioningDeviceClient.create_from_symmetric_key(
        provisioning_host=old.address, registration_id="registered-before", id_scope=dps_info(old)["idScope"],
        symmetric_key=key, server_verification_cert=ca_pem(old.ca_file)).register()
    assert result.status == "assigned", result
    return {"session_key": session_key,
            "module_twin": rm.get_module_twin("sas-dev", "mod1"),
            "config": cm.get_configuration("moved-config")}


def check_more(node, old_ca: str, tmp_path, rm, before: dict) -> None:
    """Through real clients on the node: what `fill_more` made works as it did."""
    twin = rm.get_module_twin("sas-dev", "mod1")
    assert twin.properties.desired["mode"] == "eco"
    assert twin.version == before["module_twin"].version
    cm = verified(IoTHubConfigurationManager.from_connection_string(node.connection_string), node)
    config = cm.get_configuration("moved-config")
    assert config.labels == {"team": "a"}
    assert config.content.device_content == before["config"].content.device_content
    assert config.target_condition == "tags.site='nowhere'"
    jm = verified(IoTHubJobManager.from_connection_string(node.connection_string), node)
    job = jm.get_scheduled_job("moved-job")
    assert job.status == "completed", job
    assert rm.get_twin("x509-dev").tags.get("job") == "done"

    # The verified CA still admits the device it signed.
    ca_dev = IoTHubDeviceClient.create_from_x509_certificate(
        x509=X509(cert_file=str(tmp_path / "ca-dev.pem"), key_file=str(tmp_path / "ca-dev.key")),
        hostname=node.hostname, device_id="ca-dev", server_verification_cert=ca_pem(old_ca),
        connection_retry=False)
    try:
        ca_dev.connect()
        m = Message('{"moved": "routed"}', content_encoding="utf-8", content_type="application/json")
        m.custom_properties["level"] = "routed"
        ca_dev.send_message(m)
    finally:
        ca_dev.shutdown()
    # ... and the route takes its message to the stream endpoint.
    wait_for(lambda: [e["body"] for e in stream_events(node, "moved-ep")] == [{"moved": "routed"}],
             timeout=WAIT_S, what="the routed message")

    # The persistent session's subscription: no SUBSCRIBE this time, and the message arrives.
    c, received = mqtt_session(node, "session-dev", before["session_key"], old_ca, subscribe=False)
    try:
        service = amqp_registry_manager(node)
        service.send_c2d_message("session-dev", "to-the-old-session", {})
        service.amqp_svc_client.disconnect_sync()
        wait_for(lambda: received, timeout=WAIT_S, what="the message on the moved session")
        assert received[0].payload == b"to-the-old-session"
        assert received[0].topic.startswith("devices/session-dev/messages/devicebound/")
    finally:
        close(c)

    # The feedback queued before the move, through the service SDK's feedback receiver.
    runtime = verified(IoTHubHttpRuntimeManager.from_connection_string(node.connection_string), node)
    raw = runtime.protocol.cloud_to_device_messages.receive_feedback_notification(raw=True)
    assert raw.response.status_code == 200, raw.response.text
    records = raw.response.json()
    assert [(r["deviceId"], r["originalMessageId"], r["statusCode"]) for r in records] == \
        [("fb-dev", "fb-message", "Success")], records
    runtime.complete_feedback_notification(raw.response.headers["ETag"].strip('"'))

    # The DPS registration made before the move reads back.
    dps = DeviceProvisioningClient.from_connection_string(
        dps_info(node)["serviceConnectionString"], connection_verify=old_ca)
    state = dps.device_registration_state.get(id="registered-before")
    assert state["status"] == "assigned" and state["deviceId"] == "registered-before", state


def test_a_hub_moves_into_a_cluster_with_everything_in_it(tmp_path):
    with server_workdir("ironhub-migrate-src-") as workdir, \
            fresh_database(postgres_admin_url(), f"ironhub_migrate_{os.getpid()}") as database, \
            nats_server(NATS_ADDRESS, NATS_PORT) as nats_url:
        # -- an embedded hub, filled through the SDKs ------------------------------------------
        old = IronHub(ADDRESS, workdir)
        old.start()
        with serving([old]):
            old_ca = str(tmp_path / "old-ca.pem")
            Path(old_ca).write_text(ca_pem(old.ca_file))
            rm = old.registry_manager()
            key = rm.create_device_with_sas("sas-dev", None, None, "enabled") \
                .authentication.symmetric_key.primary_key
            make_self_signed(tmp_path, "x509-dev", "x509-dev")
            rm.create_device_with_x509("x509-dev", sha1_thumbprint(tmp_path / "x509-dev.pem"), None, "enabled")
            rm.update_twin("sas-dev", Twin(tags={"site": "lab"},
                                           properties=TwinProperties(desired={"fw": "2.0"})), "*")
            device = sas_client(old, "sas-dev", key, old.ca_file)
            for i in range(3):
                m = Message(f"old-{i}", message_id=f"m-{i}")
                m.custom_properties["n"] = str(i)
                device.send_message(m)
            device.patch_twin_reported_properties({"temp": 21})
            device.shutdown()
            before = rm.get_twin("sas-dev")
            assert before.properties.reported.get("temp") == 21
            service = amqp_registry_manager(old)
            service.send_c2d_message("sas-dev", "queued-before-the-move", {"kind": "moved"})
            service.amqp_svc_client.disconnect_sync()
            dps = DeviceProvisioningClient.from_connection_string(
                dps_info(old)["serviceConnectionString"], connection_verify=old.ca_file)
            enrollment_key = new_key()
            dps.enrollment.create_or_update(id="moved-enrollment", enrollment={
                "registrationId": "moved-enrollment",
                "attestation": {"type": "symmetricKey",
                                "symmetricKey": {"primaryKey": enrollment_key, "secondaryKey": new_key()}},
            })
            id_scope = dps_info(old)["idScope"]
            more = fill_more(old, tmp_path, rm)

            # A running server holds its data directory: refused, nothing written.
            locked = migrate("--from", str(old.data_dir), "--to", database, "--nats", nats_url)
            assert locked.returncode != 0
            assert "in use" in locked.stderr and "stop the server" in locked.stderr, locked.stderr
            old.stop()

        # -- bad input: clear errors, nothing written ------------------------------------------
        bad = migrate("--from", str(old.data_dir), "--to", "mysql://x@127.0.0.1/db")
        assert bad.returncode != 0 and "postgres://" in bad.stderr, bad.stderr
        missing = migrate("--from", str(workdir / "nowhere"), "--to", database)
        assert missing.returncode != 0 and "no ironhub data" in missing.stderr, missing.stderr

        # -- the move: first the store only (as a run that stopped before the telemetry) ------
        moved_at = datetime.now(timezone.utc)
        moved = migrate("--from", str(old.data_dir), "--to", database)
        assert moved.returncode == 0, moved.stdout + moved.stderr
        assert "telemetry was not copied" in moved.stdout, moved.stdout
        counts = table(moved.stdout)
        assert counts["devices"][:3] == ["6", "6", "6"], moved.stdout
        for kind in ("modules", "module twins", "configurations", "jobs", "persistent MQTT sessions",
                     "cloud-to-device feedback waiting for services", "DPS registrations", "DPS operations"):
            assert counts[kind][0] != "0" and len(set(counts[kind][:3])) == 1, (kind, moved.stdout)
        assert counts["queued cloud-to-device messages"][:3] == ["1", "1", "1"], moved.stdout
        assert counts["DPS individual enrollments"][:3] == ["2", "2", "2"], moved.stdout

        # Once more: the target is not empty any more, and nothing is duplicated.
        again = migrate("--from", str(old.data_dir), "--to", database, "--nats", nats_url)
        assert again.returncode != 0 and "not empty" in again.stderr, again.stderr
        assert "--resume" in again.stderr, again.stderr

        # --resume completes it (the telemetry), skipping what is there; twice changes nothing.
        for _ in range(2):
            resumed = migrate("--from", str(old.data_dir), "--to", database, "--nats", nats_url, "--resume")
            assert resumed.returncode == 0, resumed.stdout + resumed.stderr
            assert "moved: every count agrees" in resumed.stdout, resumed.stdout
            after_resume = table(resumed.stdout)
            for kind, row in counts.items():
                if kind in after_resume and kind not in ("telemetry events", "event stream events"):
                    assert after_resume[kind][:3] == row[:3], (kind, resumed.stdout)
            assert after_resume["telemetry events"][:3] == ["3", "3", "3"], resumed.stdout

        # -- a node on PostgreSQL and NATS serves the moved hub ------------------------------
        with cluster(database, nats_url, [ADDRESS], prefix="ironhub-migrate-node-") as nodes:
            node = nodes[0]
            assert ca_pem(node.ca_file) == ca_pem(old_ca), "the hub's CA moved with it"
            rm = node.registry_manager()
            assert {d.device_id for d in rm.get_devices()} == {
                "sas-dev", "x509-dev", "ca-dev", "session-dev", "fb-dev", "registered-before"}
            after = rm.get_twin("sas-dev")
            assert after.tags == {"site": "lab"}
            assert after.properties.desired["fw"] == "2.0"
            assert after.properties.reported["temp"] == 21
            assert after.version == before.version
            assert after.properties.desired["$version"] == before.properties.desired["$version"]
            assert after.properties.reported["$version"] == before.properties.reported["$version"]

            # The old key authenticates; the queued message arrives.
            device = sas_client(node, "sas-dev", key, old_ca)
            try:
                message = device.receive_message(timeout=WAIT_S)
                assert message is not None, "the queued message did not arrive"
                assert message.data == b"queued-before-the-move"
                assert message.custom_properties.get("kind") == "moved"
            finally:
                device.shutdown()
            # The old certificate authenticates its device.
            x509 = IoTHubDeviceClient.create_from_x509_certificate(
                x509=X509(cert_file=str(tmp_path / "x509-dev.pem"), key_file=str(tmp_path / "x509-dev.key")),
                hostname=node.hostname, device_id="x509-dev", server_verification_cert=ca_pem(old_ca),
                connection_retry=False)
            try:
                x509.connect()
                x509.send_message(Message("new-from-x509"))
            finally:
                x509.shutdown()

            # The old telemetry, with its properties and enqueued times, then the new.
            # (Every partition: `partition_id` None.)
            events = receive(node, None, 4, starting_position="-1")
            bodies = [e.body_as_str() for e in events]
            assert [b for b in bodies if b.startswith("old-")] == ["old-0", "old-1", "old-2"], bodies
            assert "new-from-x509" in bodies, bodies
            olds = [e for e in events if e.body_as_str().startswith("old-")]
            assert [e.properties[b"n"] for e in olds] == [b"0", b"1", b"2"]
            assert all(e.enqueued_time < moved_at for e in olds), "enqueued times are kept"

            # DPS registers against the moved enrollment, with the old ID scope.
            assert dps_info(node)["idScope"] == id_scope
            client = ProvisioningDeviceClient.create_from_symmetric_key(
                provisioning_host=node.address, registration_id="moved-enrollment", id_scope=id_scope,
                symmetric_key=enrollment_key, server_verification_cert=ca_pem(old_ca))
            result = client.register()
            assert result.status == "assigned", result
            assert result.registration_state.device_id == "moved-enrollment"
            wait_for(lambda: rm.get_device("moved-enrollment"), timeout=WAIT_S, what="the provisioned device")

            check_more(node, old_ca, tmp_path, rm, more)
