"""Service-API access with bearer tokens from an OpenID Connect issuer, and `disableLocalAuth`
(Azure docs, "Control access to IoT Hub by using Microsoft Entra ID" and "Control access to DPS
with Azure AD").

The test is its own identity provider (`oidc_issuer.py`: an RSA key and an EC key, the
discovery document and JWKS served over plain HTTP on this module's loopback address, JWTs
signed here). The server runs with local authentication off, so every service call below is a
bearer token or is refused, while devices keep connecting with their own SAS keys.
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
import time
import uuid

import pytest
import requests

from conftest import ironhub_bin, test_address
from oidc_issuer import DPS_AUDIENCE, EC_KEY, HUB_AUDIENCE, OTHER_KEY, Issuer

IRONHUB_ADDRESS = test_address("127.0.0.215")
TIMEOUT_S = 30
TWIN_PRINCIPAL = str(uuid.uuid4())
ISSUER = Issuer(IRONHUB_ADDRESS)
token = ISSUER.token


@pytest.fixture(scope="module", autouse=True)
def issuer():
    with ISSUER.serving():
        yield


def ironhub_args(workdir):
    return ISSUER.serve_args(workdir, assignments={TWIN_PRINCIPAL: ["IoT Hub Twin Contributor"]})


class StaticCredential:
    """A `TokenCredential` (azure-core's protocol) that hands out one JWT."""

    def __init__(self, jwt: str):
        self.jwt = jwt
        self.scopes = []

    def get_token(self, *scopes, **kwargs):
        from azure.core.credentials import AccessToken

        self.scopes.extend(scopes)
        return AccessToken(self.jwt, int(time.time()) + 600)


def registry(hub, jwt: str):
    """The real SDK's token-credential path: `IoTHubRegistryManager.from_token_credential`."""
    from azure.iot.hub import IoTHubRegistryManager

    credential = StaticCredential(jwt)
    rm = IoTHubRegistryManager.from_token_credential(hub.hostname, credential)
    rm.protocol.config.connection.verify = hub.ca_file
    return rm, credential


def refused(call) -> str:
    """The call fails with 401 and IoT Hub's error body; returns the body's message."""
    from msrest.exceptions import HttpOperationError

    with pytest.raises(HttpOperationError) as info:
        call()
    response = info.value.response
    assert response.status_code == 401, (response.status_code, response.text)
    body = response.json()
    assert body["Message"].startswith("ErrorCode:IotHubUnauthorizedAccess;"), body
    assert body["errorCode"] == 401002, body
    return body["Message"]


def rest(hub, method, path, jwt=None, auth=None, api="2021-04-12", **kwargs):
    headers = {"Authorization": auth or f"Bearer {jwt}"}
    return requests.request(method, f"https://{hub.hostname}{path}?api-version={api}", headers=headers,
                            verify=hub.ca_file, timeout=TIMEOUT_S, **kwargs)


@pytest.fixture(scope="module")
def contributor(hub):
    rm, credential = registry(hub, token(["IoT Hub Data Contributor"]))
    return rm


@pytest.fixture(scope="module")
def device(contributor):
    device_id = f"rbac-{uuid.uuid4().hex[:8]}"
    key = base64.b64encode(os.urandom(32)).decode()
    contributor.create_device_with_sas(device_id, key, key, "enabled")
    return device_id, key


def test_contributor_writes_and_the_sdk_asks_for_iot_hubs_audience(hub):
    rm, credential = registry(hub, token(["IoT Hub Data Contributor"]))
    device_id = f"c-{uuid.uuid4().hex[:8]}"
    created = rm.create_device_with_sas(device_id, None, None, "enabled")
    assert created.device_id == device_id
    twin = rm.update_twin(device_id, {"tags": {"site": "a"}}, "*")
    assert twin.tags == {"site": "a"}
    rm.delete_device(device_id)
    assert f"{HUB_AUDIENCE}/.default" in credential.scopes


def test_reader_reads_and_is_refused_writes(hub, device):
    device_id, _ = device
    rm, _ = registry(hub, token(["IoT Hub Data Reader"]))
    assert rm.get_device(device_id).device_id == device_id
    assert rm.get_twin(device_id).device_id == device_id
    assert any(d.device_id == device_id for d in rm.get_devices())
    message = refused(lambda: rm.create_device_with_sas(f"r-{uuid.uuid4().hex[:6]}", None, None, "enabled"))
    assert "not authorized for PUT on /devices/" in message, message
    assert "Microsoft.Devices/IotHubs/devices/write" in message, message
    refused(lambda: rm.update_twin(device_id, {"tags": {"x": 1}}, "*"))
    refused(lambda: rm.delete_device(device_id))


def test_narrow_roles_from_the_assignment_table(hub, device):
    device_id, _ = device
    # No role claim: the config's table gives this principal IoT Hub Twin Contributor.
    rm, _ = registry(hub, token([], oid=TWIN_PRINCIPAL))
    twin = rm.update_twin(device_id, {"tags": {"floor": 3}}, "*")
    assert twin.tags["floor"] == 3
    refused(lambda: rm.get_device(device_id))
    nobody, _ = registry(hub, token([]))
    refused(lambda: nobody.get_twin(device_id))


@pytest.mark.parametrize("case", ["expired", "not-yet-valid", "wrong-signature", "wrong-audience",
                                  "wrong-issuer", "unknown-kid", "dps-audience"])
def test_bad_tokens_are_refused(hub, device, case):
    device_id, _ = device
    roles = ["IoT Hub Data Contributor"]
    jwt = {
        "expired": lambda: token(roles, lifetime=-120),
        "not-yet-valid": lambda: token(roles, nbf_in=600, lifetime=1200),
        "wrong-signature": lambda: token(roles, key=OTHER_KEY),
        "wrong-audience": lambda: token(roles, audience="https://management.azure.com"),
        "wrong-issuer": lambda: token(roles, issuer="https://login.example/other"),
        "unknown-kid": lambda: token(roles, key=OTHER_KEY, kid="rotated-away"),
        "dps-audience": lambda: token(roles, audience=DPS_AUDIENCE),
    }[case]()
    rm, _ = registry(hub, jwt)
    refused(lambda: rm.get_device(device_id))


def test_es256_tokens_and_skew(hub, device):
    device_id, _ = device
    # Expired 30 s ago, within the configured 60 s of clock skew.
    rm, _ = registry(hub, token(["IoT Hub Data Reader"], key=EC_KEY, kid="ec-1", lifetime=-30))
    assert rm.get_device(device_id).device_id == device_id


def test_sas_refused_when_local_auth_is_off_while_devices_connect(hub, device):
    device_id, key = device
    rm = hub.registry_manager()
    message = refused(lambda: rm.get_device(device_id))
    assert "local authentication" in message.lower(), message
    # The device API keeps its own credentials: the device connects with its SAS key.
    from azure.iot.device import IoTHubDeviceClient, Message

    client = IoTHubDeviceClient.create_from_connection_string(
        f"HostName={hub.hostname};DeviceId={device_id};SharedAccessKey={key}",
        server_verification_cert=open(hub.ca_file).read(), connection_retry=False,
    )
    try:
        client.connect()
        client.send_message(Message("still here"))
    finally:
        client.shutdown()


def test_dps_service_api_takes_dps_tokens(hub):
    group = {"enrollmentGroupId": f"g-{uuid.uuid4().hex[:6]}",
             "attestation": {"type": "symmetricKey"}}
    path = f"/enrollmentGroups/{group['enrollmentGroupId']}"
    dps_api = "2021-10-01"
    contributor = token(["Device Provisioning Service Data Contributor"], audience=DPS_AUDIENCE)
    reader = token(["Device Provisioning Service Data Reader"], audience=DPS_AUDIENCE)
    put = rest(hub, "PUT", path, contributor, api=dps_api, json=group)
    assert put.status_code == 200, put.text
    got = rest(hub, "GET", path, reader, api=dps_api)
    assert got.status_code == 200 and got.json()["enrollmentGroupId"] == group["enrollmentGroupId"], got.text
    denied = rest(hub, "DELETE", path, reader, api=dps_api)
    assert denied.status_code == 401, denied.text
    assert denied.json()["errorCode"] == 401002, denied.text
    # A hub token is for another audience; a hub role grants nothing on DPS.
    assert rest(hub, "GET", path, token(["IoT Hub Data Contributor"]), api=dps_api).status_code == 401
    hub_role = token(["IoT Hub Data Contributor"], audience=DPS_AUDIENCE)
    assert rest(hub, "GET", path, hub_role, api=dps_api).status_code == 401
    assert rest(hub, "DELETE", path, contributor, api=dps_api).status_code == 204
    # DPS's shared access policies are local authentication too.
    env = {k: v for k, v in os.environ.items() if not k.startswith("IRONHUB_")}
    sas = subprocess.run([ironhub_bin(), "dps", "enrollment-group", "list", "--data-dir", str(hub.data_dir)],
                         capture_output=True, text=True, timeout=TIMEOUT_S, stdin=subprocess.DEVNULL, env=env)
    assert sas.returncode not in (0, 2) and "local authentication" in sas.stderr.lower(), sas.stderr


def cli(hub, *args, jwt):
    env = {k: v for k, v in os.environ.items() if not k.startswith("IRONHUB_")}
    env["IRONHUB_BEARER_TOKEN"] = jwt
    return subprocess.run([ironhub_bin(), *args, "--auth-type", "login", "--hub-name" if args[0] == "hub"
                           else "--dps-name", hub.hostname, "--cafile", hub.ca_file],
                          capture_output=True, text=True, timeout=TIMEOUT_S, stdin=subprocess.DEVNULL, env=env)


def test_cli_auth_type_login(hub, device):
    device_id, _ = device
    reader = token(["IoT Hub Data Reader"])
    listed = cli(hub, "hub", "device-identity", "list", jwt=reader)
    assert listed.returncode == 0, listed.stderr
    assert any(d["deviceId"] == device_id for d in json.loads(listed.stdout))
    created = cli(hub, "hub", "device-identity", "create", "-d", f"cli-{uuid.uuid4().hex[:6]}", jwt=reader)
    assert created.returncode not in (0, 2), created.stderr
    assert "not authorized" in created.stderr, created.stderr
    dps = cli(hub, "dps", "enrollment-group", "list",
              jwt=token(["Device Provisioning Service Data Reader"], audience=DPS_AUDIENCE))
    assert dps.returncode == 0, dps.stderr
    assert isinstance(json.loads(dps.stdout), list)
    missing = subprocess.run([ironhub_bin(), "hub", "device-identity", "list", "--auth-type", "login",
                              "--hub-name", hub.hostname], capture_output=True, text=True, timeout=TIMEOUT_S,
                             env={k: v for k, v in os.environ.items() if not k.startswith("IRONHUB_")})
    assert missing.returncode != 0 and "IRONHUB_BEARER_TOKEN" in missing.stderr, missing.stderr


def token_registry(hub, jwt: str):
    """`registry`, with the AMQP client (C2D over `$cbs` with a `bearer` token) trusting the
    server's CA: uamqp reads its bundle from certifi when the client is built."""
    import uamqp.authentication.common as uamqp_common

    real = uamqp_common.certifi.where
    uamqp_common.certifi.where = lambda: hub.ca_file
    try:
        rm, _ = registry(hub, jwt)
    finally:
        uamqp_common.certifi.where = real
    return rm


def test_c2d_over_amqp_with_bearer_tokens(hub, device):
    device_id, _ = device
    sender = token_registry(hub, token(["IoT Hub Data Contributor"]))
    try:
        sender.send_c2d_message(device_id, "from a bearer")
    finally:
        sender.amqp_svc_client.disconnect_sync()
    reader = token_registry(hub, token(["IoT Hub Data Reader"]))
    try:
        with pytest.raises(Exception) as info:
            reader.send_c2d_message(device_id, "a reader may not send")
        # The token is accepted; the link is not (its roles lack the send action).
        assert "UnauthorizedAccess" in str(info.value), repr(info.value)
    finally:
        reader.amqp_svc_client.disconnect_sync()
    expired = token_registry(hub, token(["IoT Hub Data Contributor"], lifetime=-600))
    try:
        with pytest.raises(Exception) as info:
            expired.send_c2d_message(device_id, "expired")
        assert type(info.value).__name__ == "TokenAuthFailure", repr(info.value)
    finally:
        expired.amqp_svc_client.disconnect_sync()
