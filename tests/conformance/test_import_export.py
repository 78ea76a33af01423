"""Import and export jobs (`POST /jobs/create`, `GET /jobs`, `GET|DELETE /jobs/{id}`) against
real clients: the Python service SDK's `create_import_export_job` / `get_import_export_job(s)` /
`cancel_import_export_job`, the Node service SDK's `exportDevicesToBlob` /
`importDevicesFromBlob` / `getJob` / `listJobs` (`node/import_export.js`) and
`ironhub hub device-identity export|import` (az's flags), with Azurite (npm
`azurite`, plain HTTP, in memory) as the storage account and `azure-storage-blob` making the
container, its SAS and reading the blobs; and ironhub's `file:///` containers."""

from __future__ import annotations

import json
import signal
import time
from datetime import datetime, timedelta, timezone

import pytest
from azure.iot.hub import IoTHubJobManager
from azure.iot.hub.models import JobProperties
from azure.storage.blob import BlobServiceClient, ContainerSasPermissions, generate_container_sas
from msrest.exceptions import HttpOperationError

from conftest import IronHub, assert_hub_error, node_json, run_cli, serving, server_workdir, test_address
from services import azurite_blob

IRONHUB_ADDRESS = "127.0.0.35"
SECOND_HUB_ADDRESS = "127.0.0.37"
STORAGE_ADDRESS = "127.0.0.36"
STORAGE_PORT = 10000
# Azurite's well-known development account.
ACCOUNT = "devstoreaccount1"
ACCOUNT_KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
JOB_WAIT_S = 30
DEVICES = 50


class Storage:
    """Azurite's blob service: containers with a SAS URI each, and their blobs."""

    def __init__(self, address: str):
        self.endpoint = f"http://{address}:{STORAGE_PORT}/{ACCOUNT}"
        cs = f"DefaultEndpointsProtocol=http;AccountName={ACCOUNT};AccountKey={ACCOUNT_KEY};BlobEndpoint={self.endpoint};"
        self.service = BlobServiceClient.from_connection_string(cs)

    def container(self, name: str) -> str:
        """Creates container `name` and returns its SAS URI (read, write, list, create)."""
        self.service.create_container(name)
        sas = generate_container_sas(
            ACCOUNT, name, account_key=ACCOUNT_KEY,
            permission=ContainerSasPermissions(read=True, write=True, list=True, create=True, add=True),
            expiry=datetime.now(timezone.utc) + timedelta(hours=1),
        )
        return f"{self.endpoint}/{name}?{sas}"

    def read(self, container: str, blob: str) -> bytes:
        return self.service.get_blob_client(container, blob).download_blob().readall()

    def write(self, container: str, blob: str, data: bytes) -> None:
        self.service.get_blob_client(container, blob).upload_blob(data, overwrite=True)

    def exists(self, container: str, blob: str) -> bool:
        return self.service.get_blob_client(container, blob).exists()


@pytest.fixture(scope="module")
def storage():
    address = test_address(STORAGE_ADDRESS)
    with azurite_blob(address, STORAGE_PORT, "--inMemoryPersistence"):
        yield Storage(address)


@pytest.fixture(scope="module")
def second_hub(hub):
    """Another hub to import into."""
    with server_workdir("ironhub-test_import_export-second-") as workdir:
        server = IronHub(test_address(SECOND_HUB_ADDRESS), workdir)
        try:
            server.start()
            with serving([hub, server]):
                yield server
        finally:
            server._kill(signal.SIGKILL)


@pytest.fixture(scope="module")
def fleet(hub):
    """50 devices, one with tags and desired properties and one with a module."""
    rm = hub.registry_manager()
    ids = [f"ie-{i:03d}" for i in range(DEVICES)]
    for device_id in ids:
        rm.create_device_with_sas(device_id, None, None, "enabled")
    twin = rm.get_twin(ids[0])
    twin.tags = {"site": "north", "floor": 3}
    twin.properties = None
    rm.update_twin(ids[0], {"tags": {"site": "north", "floor": 3}, "properties": {"desired": {"rate": 5}}}, twin.etag)
    rm.create_module_with_sas(ids[1], "sensor", None, None, None)
    return ids


def job_manager(server: IronHub) -> IoTHubJobManager:
    """The Python SDK's job manager (which holds the import/export calls) for `server`."""
    jm = IoTHubJobManager.from_connection_string(server.connection_string)
    jm.protocol.config.connection.verify = server.ca_file
    return jm


@pytest.fixture
def jm(hub):
    return job_manager(hub)


def wait_job(jm, job_id: str):
    """The job once it is over (bounded)."""
    deadline = time.monotonic() + JOB_WAIT_S
    while True:
        job = jm.get_import_export_job(job_id)
        if job.status in ("completed", "failed", "cancelled"):
            return job
        assert time.monotonic() < deadline, f"job {job_id} still {job.status}"
        time.sleep(0.1)


def lines(data: bytes) -> list[dict]:
    return [json.loads(line) for line in data.decode().splitlines() if line.strip()]


def test_python_sdk_exports_every_device_with_keys_twins_and_modules(hub, rm, jm, storage, fleet):
    uri = storage.container("export-py")
    created = jm.create_import_export_job(JobProperties(type="export", output_blob_container_uri=uri,
                                                        exclude_keys_in_export=False))
    assert created.type == "export" and created.status == "enqueued" and created.job_id
    job = wait_job(jm, created.job_id)
    assert job.status == "completed", job.failure_reason
    assert job.progress == 100 and job.end_time_utc is not None
    rows = lines(storage.read("export-py", "devices.txt"))
    devices = {r["id"]: r for r in rows if "moduleId" not in r}
    assert set(devices) == set(fleet)
    first = devices[fleet[0]]
    stored = rm.get_device(fleet[0])
    assert first["eTag"] and first["status"] == "enabled"
    assert first["authentication"]["symmetricKey"]["primaryKey"] == stored.authentication.symmetric_key.primary_key
    assert first["tags"] == {"site": "north", "floor": 3}
    assert first["properties"]["desired"]["rate"] == 5
    assert first["twinETag"] == rm.get_twin(fleet[0]).etag
    modules = [r for r in rows if r.get("moduleId")]
    assert [(m["id"], m["moduleId"]) for m in modules] == [(fleet[1], "sensor")]
    assert [j.job_id for j in jm.get_import_export_jobs()].count(created.job_id) == 1

    # Without keys, to another blob name.
    created = jm.create_import_export_job(JobProperties(type="export", output_blob_container_uri=uri,
                                                        output_blob_name="nokeys.txt", exclude_keys_in_export=True))
    assert wait_job(jm, created.job_id).status == "completed"
    for row in lines(storage.read("export-py", "nokeys.txt")):
        assert not row["authentication"]["symmetricKey"].get("primaryKey")


def test_import_into_another_hub_with_errors_logged(hub, rm, jm, storage, fleet, second_hub):
    exported_uri = storage.container("export-src")
    job = wait_job(jm, jm.create_import_export_job(
        JobProperties(type="export", output_blob_container_uri=exported_uri)).job_id)
    assert job.status == "completed", job.failure_reason
    rm2 = second_hub.registry_manager()
    jm2 = job_manager(second_hub)
    out_uri = storage.container("import-out")
    job = wait_job(jm2, jm2.create_import_export_job(JobProperties(
        type="import", input_blob_container_uri=exported_uri, output_blob_container_uri=out_uri)).job_id)
    assert job.status == "completed", job.failure_reason
    assert not storage.exists("import-out", "importErrors.log")
    copied = rm2.get_device(fleet[0])
    assert copied.authentication.symmetric_key.primary_key == rm.get_device(fleet[0]).authentication.symmetric_key.primary_key
    twin = rm2.get_twin(fleet[0])
    assert twin.tags == {"site": "north", "floor": 3} and twin.properties.desired["rate"] == 5
    assert rm2.get_module(fleet[1], "sensor").module_id == "sensor"

    # Create, an update whose eTag does not match, a delete, and a line that is no device.
    rows = [
        {"id": "ie-new", "importMode": "create", "authentication": {"type": "sas"}},
        {"id": fleet[2], "importMode": "updateIfMatchETag", "eTag": "bm90LWl0", "status": "disabled"},
        {"id": fleet[3], "importMode": "delete"},
        {"id": fleet[4], "importMode": "updateTwin", "tags": {"moved": True}},
    ]
    body = "\n".join(json.dumps(r) for r in rows) + "\nnot json\n"
    storage.write("import-out", "changes.txt", body.encode())
    job = wait_job(jm2, jm2.create_import_export_job(JobProperties(
        type="import", input_blob_container_uri=out_uri, input_blob_name="changes.txt",
        output_blob_container_uri=out_uri)).job_id)
    assert job.status == "completed", job.failure_reason
    assert rm2.get_device("ie-new").authentication.symmetric_key.primary_key
    assert rm2.get_device(fleet[2]).status == "enabled"
    with pytest.raises(HttpOperationError) as excinfo:
        rm2.get_device(fleet[3])
    assert_hub_error(excinfo, 404, "DeviceNotFound")
    assert rm2.get_twin(fleet[4]).tags == {"moved": True}
    errors = lines(storage.read("import-out", "importErrors.log"))
    assert [(e["deviceId"], e["errorCode"]) for e in errors] == [
        (fleet[2], "PreconditionFailed"), ("", "ArgumentInvalid")]
    assert "Line 5" in errors[1]["errorStatus"]


def test_node_sdk_exports_and_imports(hub, storage, fleet, second_hub):
    uri = storage.container("export-node")
    env = {"NODE_EXTRA_CA_CERTS": hub.ca_file, "IRONHUB_CONNECTION_STRING": hub.connection_string}
    out = node_json("import_export.js", "export", "--container", uri, "--exclude-keys", env=env)
    assert out["created"]["type"] == "export"
    assert out["job"]["status"] == "completed", out["job"]
    assert out["created"]["jobId"] in out["listed"]
    rows = lines(storage.read("export-node", "devices.txt"))
    assert {r["id"] for r in rows} == set(fleet)

    env2 = {"NODE_EXTRA_CA_CERTS": second_hub.ca_file, "IRONHUB_CONNECTION_STRING": second_hub.connection_string}
    out = node_json("import_export.js", "import", "--input", uri, "--output", uri, env=env2)
    assert out["job"]["status"] == "completed", out["job"]
    assert second_hub.registry_manager().get_device(fleet[10]).device_id == fleet[10]


def test_file_url_container_is_ironhubs_extension(hub, rm, jm, fleet, tmp_path):
    created = jm.create_import_export_job(JobProperties(type="export", output_blob_container_uri=f"file://{tmp_path}"))
    job = wait_job(jm, created.job_id)
    assert job.status == "completed", job.failure_reason
    rows = lines((tmp_path / "devices.txt").read_bytes())
    assert len([r for r in rows if "moduleId" not in r]) >= DEVICES
    (tmp_path / "in.txt").write_text(json.dumps({"id": "ie-from-file", "importMode": "create"}) + "\n")
    job = wait_job(jm, jm.create_import_export_job(JobProperties(
        type="import", input_blob_container_uri=f"file://{tmp_path}", input_blob_name="in.txt",
        output_blob_container_uri=f"file://{tmp_path}")).job_id)
    assert job.status == "completed", job.failure_reason
    assert rm.get_device("ie-from-file").device_id == "ie-from-file"


def test_bad_containers_fail_the_job_with_a_reason(hub, rm, jm, storage, fleet):
    uri = storage.container("bad-sas")
    forged = uri.replace("sig=", "sig=AAAA")
    job = wait_job(jm, jm.create_import_export_job(
        JobProperties(type="export", output_blob_container_uri=forged)).job_id)
    assert job.status == "failed" and "403" in job.failure_reason, job.failure_reason
    assert "sig=" not in job.failure_reason
    unreachable = f"http://{test_address('127.0.0.36')}:1/{ACCOUNT}/none?sig=x"
    job = wait_job(jm, jm.create_import_export_job(JobProperties(
        type="import", input_blob_container_uri=unreachable, output_blob_container_uri=uri)).job_id)
    assert job.status == "failed" and "could not be reached" in job.failure_reason, job.failure_reason
    job = wait_job(jm, jm.create_import_export_job(JobProperties(
        type="import", input_blob_container_uri=uri, input_blob_name="missing.txt",
        output_blob_container_uri=uri)).job_id)
    assert job.status == "failed" and "404" in job.failure_reason, job.failure_reason


def test_malformed_requests_are_refused_and_unknown_jobs_are_404(hub, jm):
    for props, code in [
        (JobProperties(type="export"), "ArgumentNull"),
        (JobProperties(type="export", output_blob_container_uri="not a uri"), "ArgumentInvalid"),
        (JobProperties(type="backup", output_blob_container_uri="file:///tmp"), "ArgumentInvalid"),
        (JobProperties(type="import", output_blob_container_uri="file:///tmp"), "ArgumentNull"),
        (JobProperties(type="export", output_blob_container_uri="file:///tmp", output_blob_name="../x"),
         "ArgumentInvalid"),
        (JobProperties(type="export", output_blob_container_uri="file:///tmp",
                       storage_authentication_type="identityBased"), "ArgumentInvalid"),
    ]:
        before = len(jm.get_import_export_jobs())
        with pytest.raises(HttpOperationError) as excinfo:
            jm.create_import_export_job(props)
        assert_hub_error(excinfo, 400, code)
        assert len(jm.get_import_export_jobs()) == before
    for call in (jm.get_import_export_job, jm.cancel_import_export_job):
        with pytest.raises(HttpOperationError) as excinfo:
            call("no-such-job")
        assert_hub_error(excinfo, 404, "JobNotFound")


def test_a_finished_job_is_left_as_it_is_by_a_cancel(hub, rm, jm, fleet, tmp_path):
    created = jm.create_import_export_job(JobProperties(type="export", output_blob_container_uri=f"file://{tmp_path}"))
    job = wait_job(jm, created.job_id)
    jm.cancel_import_export_job(created.job_id)
    assert jm.get_import_export_job(created.job_id).status == job.status == "completed"


def cli(hub, *args: str) -> dict:
    proc = run_cli("hub", "device-identity", *args, "--login", hub.connection_string, "--cafile", hub.ca_file,
                   check=True)
    return json.loads(proc.stdout)


def test_cli_exports_and_imports_with_azs_flags(hub, storage, fleet, second_hub):
    uri = storage.container("export-cli")
    job = cli(hub, "export", "--bcu", uri, "--ik", "--wait")
    assert (job["type"], job["status"], job["excludeKeysInExport"]) == ("export", "completed", False)
    rows = lines(storage.read("export-cli", "devices.txt"))
    assert all(r["authentication"]["symmetricKey"].get("primaryKey") for r in rows if "moduleId" not in r)
    job = cli(hub, "export", "--blob-container-uri", uri)
    assert job["status"] == "enqueued" and job["excludeKeysInExport"] is True
    job = cli(second_hub, "import", "--ibcu", uri, "--obcu", uri, "--wait")
    assert job["status"] == "completed", job


def test_a_job_survives_kill_9(hub, jm, fleet, tmp_path):
    created = jm.create_import_export_job(JobProperties(type="export", output_blob_container_uri=f"file://{tmp_path}"))
    hub._kill(signal.SIGKILL)
    hub.start()
    job = wait_job(job_manager(hub), created.job_id)
    assert job.status == "completed", job.failure_reason
    assert (tmp_path / "devices.txt").exists()
