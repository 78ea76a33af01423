"""Moving a hub: an embedded hub filled through the real SDKs (service SDK: a SAS device, an
X.509 device, twin tags and desired properties, a queued cloud-to-device message, a DPS
enrollment; device SDK: telemetry and reported properties) is stopped, copied by
`ironhub migrate --from DATA_DIR --to postgres://… --nats nats://…` into a database and a
nats-server of this module's own, and a node started on them serves it: the devices authenticate
with their old keys and certificate, the twins read back with their versions, the device receives
the queued message, `azure-eventhub` reads the old telemetry with its enqueued times, and DPS
registers against the moved enrollment. Bad input (a URL that is no PostgreSQL one, a data
directory a running server holds, a target that is not empty) fails clearly and writes nothing."""

from __future__ import annotations

import os
from datetime import datetime, timezone
from pathlib import Path

import pytest
from azure.iot.device import IoTHubDeviceClient, Message, ProvisioningDeviceClient, X509
from azure.iot.deviceprovisioning import DeviceProvisioningClient
from azure.iot.hub.models import Twin, TwinProperties

from conftest import IronHub, amqp_registry_manager, run_cli, server_workdir, serving, test_address
from cluster_helpers import cluster, fresh_database, postgres_admin_url
from dps_helpers import dps_info, make_self_signed, new_key, sha1_thumbprint, wait_for
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

        # -- the move -----------------------------------------------------------------------
        moved_at = datetime.now(timezone.utc)
        moved = migrate("--from", str(old.data_dir), "--to", database, "--nats", nats_url)
        assert moved.returncode == 0, moved.stdout + moved.stderr
        assert "moved: every count agrees" in moved.stdout, moved.stdout
        counts = {line[:52].strip(): line[52:].split() for line in moved.stdout.splitlines()[1:]
                  if len(line) > 52}
        assert counts["devices"][:3] == ["2", "2", "2"], moved.stdout
        assert counts["queued cloud-to-device messages"][:3] == ["1", "1", "1"], moved.stdout
        assert counts["DPS individual enrollments"][:3] == ["1", "1", "1"], moved.stdout
        assert int(counts["telemetry events"][0]) >= 3, moved.stdout

        # Once more: the target is not empty any more, and nothing is duplicated.
        again = migrate("--from", str(old.data_dir), "--to", database, "--nats", nats_url)
        assert again.returncode != 0 and "not empty" in again.stderr, again.stderr

        # -- a node on PostgreSQL and NATS serves the moved hub ------------------------------
        with cluster(database, nats_url, [ADDRESS], prefix="ironhub-migrate-node-") as nodes:
            node = nodes[0]
            assert ca_pem(node.ca_file) == ca_pem(old_ca), "the hub's CA moved with it"
            rm = node.registry_manager()
            assert {d.device_id for d in rm.get_devices()} == {"sas-dev", "x509-dev"}
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
