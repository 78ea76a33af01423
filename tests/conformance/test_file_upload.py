"""File upload against real clients: the Python device SDK's `get_storage_info_for_blob` →
`azure-storage-blob` upload → `notify_blob_upload_status`, the Node device SDK's `uploadToBlob`
(`node/upload.js`), with Azurite (npm `azurite`, over
HTTPS with a certificate of its own) as the hub's Azure Storage account; the services' file
upload notification feed over REST and over AMQP (the Node service SDK's
`getFileNotificationReceiver`); and `ironhub device upload-file`."""

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
import requests
from azure.iot.device import IoTHubDeviceClient
from azure.storage.blob import BlobClient, BlobServiceClient

from conftest import IronHub, node_json, require_tool, run_cli, test_address
from services import azurite_blob
from test_device import device_key, sas

HUB_ADDRESS = "127.0.0.51"
STORAGE_ADDRESS = "127.0.0.52"
STORAGE_PORT = 10000
CONTAINER = "uploads"
# Azurite's well-known development account.
ACCOUNT = "devstoreaccount1"
ACCOUNT_KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
NODE_DIR = Path(__file__).resolve().parent / "node"
FEED = "/messages/serviceBound/filenotifications"


@pytest.fixture(scope="module")
def storage():
    """Azurite's blob service on its own loopback address, over HTTPS with a certificate for that
    address from a CA of its own; yields (connection string, the CA's certificate file)."""
    require_tool("openssl")
    address = test_address(STORAGE_ADDRESS)
    workdir = Path(tempfile.mkdtemp(prefix="ironhub-azurite-"))
    ca, ca_key = workdir / "storage-ca.pem", workdir / "storage-ca.key"
    cert, key = workdir / "azurite.pem", workdir / "azurite.key"
    csr, ext = workdir / "azurite.csr", workdir / "azurite.ext"
    ext.write_text(f"basicConstraints=critical,CA:FALSE\nextendedKeyUsage=serverAuth\nsubjectAltName=IP:{address}\n")
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes"]
    for args in (
        ["req", "-x509", *ec, "-keyout", str(ca_key), "-out", str(ca), "-days", "2", "-subj", "/CN=Test Storage CA",
         "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign"],
        ["req", "-new", *ec, "-keyout", str(key), "-out", str(csr), "-subj", f"/CN={address}"],
        ["x509", "-req", "-in", str(csr), "-CA", str(ca), "-CAkey", str(ca_key), "-CAcreateserial", "-days", "2",
         "-extfile", str(ext), "-out", str(cert)],
    ):
        subprocess.run(["openssl", *args], check=True, capture_output=True, timeout=30)
    try:
        with azurite_blob(address, STORAGE_PORT, "--location", str(workdir / "data"), "--cert", str(cert),
                          "--key", str(key)):
            endpoint = f"https://{address}:{STORAGE_PORT}/{ACCOUNT}"
            cs = f"DefaultEndpointsProtocol=https;AccountName={ACCOUNT};AccountKey={ACCOUNT_KEY};BlobEndpoint={endpoint};"
            BlobServiceClient.from_connection_string(cs, connection_verify=str(ca)).create_container(CONTAINER)
            yield cs, str(ca)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


@pytest.fixture(scope="module")
def hub(storage):
    """A hub with file upload on Azurite, notifications on, trusting Azurite's certificate."""
    cs, cert = storage
    workdir = Path(tempfile.mkdtemp(prefix="ironhub-test_file_upload-"))
    server = IronHub(test_address(HUB_ADDRESS), workdir, [
        "--file-upload-connection-string", cs, "--file-upload-container", CONTAINER,
        "--file-upload-notifications", "--file-upload-max-delivery-count", "2", "--trust-ca", cert,
    ])
    try:
        server.start()
        yield server
    finally:
        server._kill(signal.SIGKILL)
        shutil.rmtree(workdir, ignore_errors=True)


def device(hub, rm, device_id: str) -> IoTHubDeviceClient:
    key = device_key(rm, device_id)
    cs = f"HostName={hub.hostname};DeviceId={device_id};SharedAccessKey={key}"
    return IoTHubDeviceClient.create_from_connection_string(cs, server_verification_cert=open(hub.ca_file).read())


def service_auth(hub) -> str:
    parts = hub.connection_string_parts()
    return sas(hub.hostname, parts["SharedAccessKey"]) + f"&skn={parts['SharedAccessKeyName']}"


def feed(hub, method: str = "GET", path: str = FEED) -> requests.Response:
    return requests.request(method, f"https://{hub.address}{path}", params={"api-version": "2021-04-12"},
                            headers={"Authorization": service_auth(hub)}, verify=hub.ca_file, timeout=30)


def device_call(hub, device_id: str, key: str, path: str, body: dict) -> requests.Response:
    token = sas(f"{hub.hostname}/devices/{device_id}", key)
    return requests.post(f"https://{hub.address}/devices/{device_id}{path}", params={"api-version": "2021-04-12"},
                         json=body, headers={"Authorization": token}, verify=hub.ca_file, timeout=30)


def blob_url(info: dict) -> str:
    blob = "/".join(urllib.parse.quote(s) for s in info["blobName"].split("/"))
    return f"https://{info['hostName']}/{info['containerName']}/{blob}{info['sasToken']}"


def take_notification(hub) -> tuple[dict, requests.Response]:
    r = feed(hub)
    assert r.status_code == 200, (r.status_code, r.text)
    return r.json(), r


def test_python_device_sdk_end_to_end(hub, rm, storage):
    _, cert = storage
    client = device(hub, rm, "uploader")
    client.connect()
    try:
        info = client.get_storage_info_for_blob("reports/hello.txt")
        assert info["hostName"] == f"{test_address(STORAGE_ADDRESS)}:{STORAGE_PORT}/{ACCOUNT}"
        assert info["containerName"] == CONTAINER
        assert info["blobName"] == "uploader/reports/hello.txt"
        assert info["correlationId"] and info["sasToken"].startswith("?")
        data = b"hello from a device\n" * 10
        BlobClient.from_blob_url(blob_url(info), connection_verify=cert).upload_blob(data)
        client.notify_blob_upload_status(info["correlationId"], True, 201, "uploaded")
    finally:
        client.shutdown()

    notification, response = take_notification(hub)
    assert notification["deviceId"] == "uploader"
    assert notification["blobName"] == "uploader/reports/hello.txt"
    assert notification["blobUri"] == (
        f"https://{test_address(STORAGE_ADDRESS)}:{STORAGE_PORT}/{ACCOUNT}/{CONTAINER}/uploader/reports/hello.txt")
    assert notification["blobSizeInBytes"] == len(data)
    assert notification["lastUpdatedTime"] and notification["enqueuedTimeUtc"]
    token = response.headers["iothub-locktoken"]
    assert response.headers["etag"] == f'"{token}"' and response.headers["iothub-deliverycount"] == "1"
    # Nothing else waits while it is locked; completing it removes it.
    assert feed(hub).status_code == 204
    assert feed(hub, "DELETE", f"{FEED}/{token}").status_code == 204
    assert feed(hub, "DELETE", f"{FEED}/{token}").status_code == 412
    assert feed(hub).status_code == 204
    # The blob is in the container, as uploaded.
    stored = BlobServiceClient.from_connection_string(storage[0], connection_verify=cert)
    assert stored.get_blob_client(CONTAINER, "uploader/reports/hello.txt").download_blob().readall() == data


def test_sas_is_scoped_and_bad_completions_change_nothing(hub, rm, storage):
    _, cert = storage
    key = device_key(rm, "careful")
    other_key = device_key(rm, "other")
    r = device_call(hub, "careful", key, "/files", {"blobName": "a.bin"})
    assert r.status_code == 200, r.text
    info = r.json()
    # The SAS writes that one blob only.
    elsewhere = dict(info, blobName="other/a.bin")
    with pytest.raises(Exception) as e:
        BlobClient.from_blob_url(blob_url(elsewhere), connection_verify=cert).upload_blob(b"x")
    assert getattr(e.value, "status_code", None) == 403
    BlobClient.from_blob_url(blob_url(info), connection_verify=cert).upload_blob(b"12345")

    for body, code in [
        ({"correlationId": "forged", "isSuccess": True, "statusCode": 200}, "InvalidFileUploadCorrelationId"),
        ({"correlationId": info["correlationId"] + "x", "isSuccess": True}, "InvalidFileUploadCorrelationId"),
        ({"correlationId": info["correlationId"]}, "InvalidFileUploadCompletionStatus"),
    ]:
        r = device_call(hub, "careful", key, "/files/notifications", body)
        assert (r.status_code, r.headers.get("iothub-errorcode")) == (400, code), r.text
    # Another device cannot complete it; a wrong key is a 401.
    r = device_call(hub, "other", other_key, "/files/notifications",
                    {"correlationId": info["correlationId"], "isSuccess": True})
    assert r.status_code == 400 and r.headers["iothub-errorcode"] == "InvalidFileUploadCorrelationId"
    assert device_call(hub, "careful", other_key, "/files", {"blobName": "x"}).status_code == 401
    for name in ["", "../escape.txt", "a//b", "a\\b"]:
        r = device_call(hub, "careful", key, "/files", {"blobName": name})
        assert r.status_code == 400, (name, r.text)
    assert feed(hub).status_code == 204

    # A failed upload is acknowledged and notifies nobody; a successful one does.
    r = device_call(hub, "careful", key, "/files/notifications",
                    {"correlationId": info["correlationId"], "isSuccess": False, "statusCode": 500,
                     "statusDescription": "disk full"})
    assert r.status_code == 204, r.text
    assert feed(hub).status_code == 204
    r = device_call(hub, "careful", key, "/files/notifications",
                    {"correlationId": info["correlationId"], "isSuccess": True, "statusCode": 201})
    assert r.status_code == 204, r.text

    # The notification survives kill -9; abandoned, it comes back; after the maximum delivery
    # count (2 here) it is dropped.
    hub.kill9()
    hub.start()
    first, response = take_notification(hub)
    assert first["blobName"] == "careful/a.bin" and first["blobSizeInBytes"] == 5
    token = response.headers["iothub-locktoken"]
    assert feed(hub, "POST", f"{FEED}/{token}/abandon").status_code == 204
    again, response = take_notification(hub)
    assert again == first and response.headers["iothub-deliverycount"] == "2"
    assert feed(hub, "POST", f"{FEED}/{response.headers['iothub-locktoken']}/abandon").status_code == 204
    assert feed(hub).status_code == 204


def test_cli_upload_file(hub, rm, storage, tmp_path):
    _, cert = storage
    device_key(rm, "cli-uploader")
    path = tmp_path / "firmware.log"
    path.write_bytes(b"line 1\nline 2\n")
    d = ["--data-dir", str(hub.data_dir), "--cafile", cert]
    out = run_cli("device", "upload-file", "-d", "cli-uploader", "--fp", str(path), "--ct", "text/plain", *d,
                  check=True)
    assert out.stdout == ""
    notification, response = take_notification(hub)
    assert notification["deviceId"] == "cli-uploader"
    assert notification["blobName"] == "cli-uploader/firmware.log"
    assert notification["blobSizeInBytes"] == 14
    assert feed(hub, "DELETE", f"{FEED}/{response.headers['iothub-locktoken']}").status_code == 204
    blob = BlobServiceClient.from_connection_string(storage[0], connection_verify=cert).get_blob_client(
        CONTAINER, "cli-uploader/firmware.log")
    assert blob.download_blob().readall() == path.read_bytes()
    assert blob.get_blob_properties().content_settings.content_type == "text/plain"

    missing = run_cli("device", "upload-file", "-d", "nobody", "--fp", str(path), "--ct", "text/plain", *d)
    assert missing.returncode != 0 and "DeviceNotFound" in missing.stderr


def test_node_device_sdk_upload_to_blob(hub, rm, storage, tmp_path):
    """azure-iot-device (Node)'s `uploadToBlob`: SAS, upload with @azure/storage-blob, notify."""
    _, cert = storage
    key = device_key(rm, "node-uploader")
    trust = tmp_path / "trust.pem"
    trust.write_text(Path(hub.ca_file).read_text() + Path(cert).read_text())
    env = dict(os.environ, NODE_EXTRA_CA_CERTS=str(trust))
    text = "uploaded by the Node SDK\n"
    proc = subprocess.run(
        ["node", "upload.js", "--device-cs", f"HostName={hub.hostname};DeviceId=node-uploader;SharedAccessKey={key}",
         "--blob", "node/report.txt", "--text", text],
        cwd=NODE_DIR, env=env, capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL,
    )
    assert proc.returncode == 0, f"{proc.stdout}\n{proc.stderr}"
    notification, response = take_notification(hub)
    assert notification["deviceId"] == "node-uploader"
    assert notification["blobName"] == "node-uploader/node/report.txt"
    assert notification["blobSizeInBytes"] == len(text)
    assert feed(hub, "DELETE", f"{FEED}/{response.headers['iothub-locktoken']}").status_code == 204
    blob = BlobServiceClient.from_connection_string(storage[0], connection_verify=cert).get_blob_client(
        CONTAINER, "node-uploader/node/report.txt")
    assert blob.download_blob().readall() == text.encode()


def uploaded(hub, key: str, storage, device_id: str, blob: str, data: bytes) -> None:
    """A blob uploaded through the device API and notified as a success."""
    r = device_call(hub, device_id, key, "/files", {"blobName": blob})
    assert r.status_code == 200, r.text
    info = r.json()
    BlobClient.from_blob_url(blob_url(info), connection_verify=storage[1]).upload_blob(data)
    r = device_call(hub, device_id, key, "/files/notifications",
                    {"correlationId": info["correlationId"], "isSuccess": True, "statusCode": 201})
    assert r.status_code == 204, r.text


def test_node_service_sdk_receives_notifications_over_amqp(hub, rm, storage):
    """azure-iothub (Node)'s `getFileNotificationReceiver` on `/messages/serviceBound/filenotifications`:
    IoT Hub's JSON; the SDK's receiver accepts what it receives (rhea's auto-accept), so the
    notification is completed then and there, and gone from the REST feed too."""
    assert feed(hub).status_code == 204
    key = device_key(rm, "amqp-notified")
    uploaded(hub, key, storage, "amqp-notified", "logs/a.txt", b"abc")
    env = {"NODE_EXTRA_CA_CERTS": hub.ca_file, "IRONHUB_CONNECTION_STRING": hub.connection_string}
    out = node_json("file_notifications.js", "--settle", "complete", env=env)
    [got] = out["received"]
    notification = got["notification"]
    assert notification["deviceId"] == "amqp-notified"
    assert notification["blobName"] == "amqp-notified/logs/a.txt"
    assert notification["blobUri"] == (
        f"https://{test_address(STORAGE_ADDRESS)}:{STORAGE_PORT}/{ACCOUNT}/{CONTAINER}/amqp-notified/logs/a.txt")
    assert notification["blobSizeInBytes"] == 3
    assert notification["lastUpdatedTime"] and notification["enqueuedTimeUtc"]
    assert got["contentType"] == "application/vnd.microsoft.iothub.filenotification.json"
    assert got["deliveryCount"] == 1 and got["messageId"]
    assert feed(hub).status_code == 204

    # A service whose key does not verify gets no receiver, and the notification stays queued.
    uploaded(hub, key, storage, "amqp-notified", "logs/b.txt", b"b")
    parts = hub.connection_string_parts()
    wrong = hub.connection_string.replace(parts["SharedAccessKey"], "A" * 43 + "=")
    out = node_json("file_notifications.js", "--settle", "complete",
                    env=dict(env, IRONHUB_CONNECTION_STRING=wrong))
    # The SDK reports the refused put-token as its failure to connect.
    assert out["receiverError"]["message"] == "AMQP Transport: Could not connect", out
    waiting, response = take_notification(hub)
    assert waiting["blobName"] == "amqp-notified/logs/b.txt"
    assert feed(hub, "DELETE", f"{FEED}/{response.headers['iothub-locktoken']}").status_code == 204


def test_notifications_are_abandoned_and_completed_by_disposition(hub, rm, storage):
    """uamqp's receiver, logged in with SASL PLAIN as a policy (`{policy}@sas.root.{hub}`),
    settling by hand: `released` abandons (it comes again, counted), `accepted` completes."""
    from uamqp import ReceiveClient
    from uamqp.authentication import SASLPlain

    assert feed(hub).status_code == 204
    uploaded(hub, device_key(rm, "amqp-settled"), storage, "amqp-settled", "c.txt", b"cc")
    parts = hub.connection_string_parts()
    policy = parts["SharedAccessKeyName"]
    token = sas(hub.hostname, parts["SharedAccessKey"]) + f"&skn={policy}"
    auth = SASLPlain(hub.hostname, f"{policy}@sas.root.{hub.hostname.split('.')[0]}", token, verify=hub.ca_file)
    client = ReceiveClient(f"amqps://{hub.hostname}{FEED}", auth=auth, auto_complete=False)
    try:
        [first] = client.receive_message_batch(max_batch_size=1, timeout=20000)
        assert json.loads(b"".join(first.get_data()))["blobName"] == "amqp-settled/c.txt"
        assert first.application_properties[b"iothub-deliverycount"] == 1
        first.release()
        [again] = client.receive_message_batch(max_batch_size=1, timeout=20000)
        assert json.loads(b"".join(again.get_data())) == json.loads(b"".join(first.get_data()))
        assert again.application_properties[b"iothub-deliverycount"] == 2
        again.accept()
        assert client.receive_message_batch(max_batch_size=1, timeout=2000) == []
    finally:
        client.close()
    assert feed(hub).status_code == 204
