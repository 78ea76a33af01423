"""Module identities with real clients: modules that authenticate with X.509 certificates,
through the Python device SDK's `IoTHubModuleClient.create_from_x509_certificate` (client id
`{deviceId}/{moduleId}`, no password, a client certificate): `selfSigned` modules by their
registered thumbprint, and `certificateAuthority` modules by a chain to a CA the hub verified,
whose leaf's CN is `{deviceId}/{moduleId}` as IoT Hub requires; a wrong certificate is refused.
And a module's own connection state (`connectionState`, `connectionStateUpdatedTime`,
`lastActivityTime` of its identity and its twin, `devices.modules` queries on it) while a
module client is connected over MQTT (Python) or AMQP (Node's `ModuleClient`), and after."""

from __future__ import annotations

import itertools
import json
import subprocess
from pathlib import Path

import pytest
from azure.iot.device import IoTHubModuleClient, Message, X509
from azure.iot.device.exceptions import CredentialError
from azure.iot.hub.models import QuerySpecification

from conftest import ironhub_bin, require_tool, test_address
from dps_helpers import make_root, make_self_signed, make_signed, sha1_thumbprint, stored_events, wait_for
from test_amqp_device import NodeDevice

IRONHUB_ADDRESS = test_address("127.0.0.31")
CLI_TIMEOUT_S = 30

TRANSPORTS = pytest.mark.parametrize("websockets", [False, True], ids=["mqtt-8883", "websocket-443"])

_counter = itertools.count(1)


def uid(prefix: str) -> str:
    return f"{prefix}-{next(_counter)}"


def cli(hub, *args: str):
    """`ironhub <args> --data-dir …`, its JSON output."""
    proc = subprocess.run([ironhub_bin(), *args, "--data-dir", str(hub.data_dir)], capture_output=True,
                          text=True, timeout=CLI_TIMEOUT_S, stdin=subprocess.DEVNULL)
    assert proc.returncode == 0, f"`{' '.join(args)}` exited {proc.returncode}:\n{proc.stdout}\n{proc.stderr}"
    return json.loads(proc.stdout) if proc.stdout.strip() else None


def module_client(hub, folder: Path, name: str, device_id: str, module_id: str, **kw) -> IoTHubModuleClient:
    return IoTHubModuleClient.create_from_x509_certificate(
        X509(str(folder / f"{name}.pem"), str(folder / f"{name}.key")), hostname=hub.hostname,
        device_id=device_id, module_id=module_id, server_verification_cert=Path(hub.ca_file).read_text(),
        connection_retry=False, **kw)


def module_events(hub, device_id: str, module_id: str) -> list:
    return [e for e in stored_events(hub, device_id) if e["systemProperties"].get("iothub-connection-module-id") == module_id]


def sends_and_reads_its_twin(hub, rm, client: IoTHubModuleClient, device_id: str, module_id: str) -> None:
    try:
        client.connect()
        client.send_message(Message(f"hello from {module_id}"))
        client.patch_twin_reported_properties({"firmware": "1.2"})
        twin = client.get_twin()
    finally:
        client.shutdown()
    assert twin["reported"]["firmware"] == "1.2"
    assert rm.get_module_twin(device_id, module_id).properties.reported["firmware"] == "1.2"
    [event] = module_events(hub, device_id, module_id)
    assert event["body"] == f"hello from {module_id}"
    auth = json.loads(event["systemProperties"]["iothub-connection-auth-method"])
    assert auth["scope"] == "module"


def refused(client: IoTHubModuleClient) -> None:
    with pytest.raises(CredentialError):
        client.connect()
    client.shutdown()


@pytest.fixture(scope="module")
def hub_ca(hub, tmp_path_factory):
    """A root CA the hub verified (proof of possession with ironhub's CLI)."""
    require_tool("openssl")
    tmp = tmp_path_factory.mktemp("module-ca")
    make_root(tmp, "root", "Module Root CA")
    cli(hub, "hub", "certificate", "create", "--name", "module-root", "--path", str(tmp / "root.pem"))
    code = cli(hub, "hub", "certificate", "generate-verification-code", "--name", "module-root")
    make_signed(tmp, "proof", code["properties"]["verificationCode"], "root")
    cli(hub, "hub", "certificate", "verify", "--name", "module-root", "--path", str(tmp / "proof.pem"))
    return tmp


@TRANSPORTS
def test_self_signed_module_sends_telemetry_and_reads_its_twin(hub, rm, tmp_path, websockets):
    require_tool("openssl")
    device_id, module_id = uid("d"), "sensor"
    rm.create_device_with_sas(device_id, "", "", "enabled")
    # The subject does not matter for a selfSigned identity: only the thumbprint does.
    make_self_signed(tmp_path, "own", "any-subject")
    make_self_signed(tmp_path, "other", "any-subject")
    module = rm.create_module_with_x509(device_id, module_id, None, sha1_thumbprint(tmp_path / "own.pem"), None)
    assert module.authentication.type == "selfSigned"

    client = module_client(hub, tmp_path, "own", device_id, module_id, websockets=websockets)
    sends_and_reads_its_twin(hub, rm, client, device_id, module_id)

    # Another certificate, a module without certificates, and the device's own id are refused.
    refused(module_client(hub, tmp_path, "other", device_id, module_id, websockets=websockets))
    rm.create_module_with_sas(device_id, "keyed", None, "", "")
    refused(module_client(hub, tmp_path, "own", device_id, "keyed", websockets=websockets))
    refused(module_client(hub, tmp_path, "own", device_id, "missing", websockets=websockets))
    assert len(module_events(hub, device_id, module_id)) == 1, "nothing refused was stored"


@TRANSPORTS
def test_ca_module_needs_a_verified_chain_and_its_own_cn(hub, rm, hub_ca, tmp_path, websockets):
    device_id, module_id = uid("d"), "analyzer"
    rm.create_device_with_sas(device_id, "", "", "enabled")
    module = rm.create_module_with_certificate_authority(device_id, module_id, None)
    assert module.authentication.type == "certificateAuthority"
    # The CN is `{deviceId}/{moduleId}` (the slash escaped for openssl's -subj).
    make_signed(hub_ca, f"{device_id}-good", f"{device_id}\\/{module_id}", "root")
    make_signed(hub_ca, f"{device_id}-device-cn", device_id, "root")
    make_signed(hub_ca, f"{device_id}-module-cn", module_id, "root")
    make_root(tmp_path, "rogue", "Rogue CA")
    make_signed(tmp_path, "rogue-leaf", f"{device_id}\\/{module_id}", "rogue")

    client = module_client(hub, hub_ca, f"{device_id}-good", device_id, module_id, websockets=websockets)
    sends_and_reads_its_twin(hub, rm, client, device_id, module_id)

    for name in (f"{device_id}-device-cn", f"{device_id}-module-cn"):
        refused(module_client(hub, hub_ca, name, device_id, module_id, websockets=websockets))
    refused(module_client(hub, tmp_path, "rogue-leaf", device_id, module_id, websockets=websockets))
    assert len(module_events(hub, device_id, module_id)) == 1, "nothing refused was stored"


def test_module_thumbprints_are_validated(hub, rm):
    from msrest.exceptions import HttpOperationError

    device_id = uid("d")
    rm.create_device_with_sas(device_id, "", "", "enabled")
    for bad in ("not-hex", "AB" * 21):
        with pytest.raises(HttpOperationError) as e:
            rm.create_module_with_x509(device_id, "m", None, bad, None)
        assert e.value.response.status_code == 400
        assert e.value.response.headers.get("iothub-errorcode") == "ArgumentInvalid"
    assert rm.get_modules(device_id) == [], "refused requests change nothing"


def shown(rm, device_id: str, module_id: str) -> tuple[str, str]:
    """The module's connection state as its identity and its twin show it."""
    return (rm.get_module(device_id, module_id).connection_state,
            rm.get_module_twin(device_id, module_id).connection_state)


@pytest.mark.parametrize("transport", ["mqtt", "amqp"])
def test_a_module_is_shown_connected_while_its_client_is(hub, rm, transport):
    device_id, module_id = uid(f"state-{transport}"), "watcher"
    rm.create_device_with_sas(device_id, "", "", "enabled")
    created = rm.create_module_with_sas(device_id, module_id, None, "", "")
    assert created.connection_state == "Disconnected"
    assert shown(rm, device_id, module_id) == ("Disconnected", "Disconnected")
    cs = (f"HostName={hub.hostname};DeviceId={device_id};ModuleId={module_id};"
          f"SharedAccessKey={created.authentication.symmetric_key.primary_key}")
    connected_modules = QuerySpecification(
        query=f"SELECT * FROM devices.modules WHERE connectionState = 'Connected' AND deviceId = '{device_id}'")

    if transport == "mqtt":
        client = IoTHubModuleClient.create_from_connection_string(
            cs, server_verification_cert=Path(hub.ca_file).read_text(), connection_retry=False)
        client.connect()
        close = client.shutdown
    else:
        node = NodeDevice(hub, "amqp", cs)
        assert node.opened["event"] == "open", node.opened
        node.run("send", text="hello")  # the links attach: the module is connected
        close = node.close
    try:
        wait_for(lambda: shown(rm, device_id, module_id) == ("Connected", "Connected"), what="Connected")
        connected = rm.get_module(device_id, module_id)
        assert connected.etag == created.etag, "a connection does not change the etag"
        assert connected.connection_state_updated_time > created.connection_state_updated_time
        assert connected.last_activity_time > created.last_activity_time
        assert [t.module_id for t in rm.query_iot_hub(connected_modules).items] == [module_id]
        assert rm.get_device(device_id).connection_state == "Disconnected", "the device is not connected"
    finally:
        close()

    wait_for(lambda: shown(rm, device_id, module_id) == ("Disconnected", "Disconnected"), what="Disconnected")
    after = rm.get_module(device_id, module_id)
    assert after.connection_state_updated_time >= connected.connection_state_updated_time
    assert after.etag == created.etag
    assert rm.query_iot_hub(connected_modules).items == []
