"""Modules over HTTPS: the Node device SDK's `ModuleClient` on its `Http` transport
(`azure-iot-device-http`). Its telemetry goes to the device's `/devices/{d}/messages/events`
with the module's own SAS token (and to `/devices/{d}/modules/{m}/messages/events`, where
other SDKs post it), stored as the module's (`iothub-connection-module-id`); its
`invokeMethod` posts to `/twins/{d}[/modules/{m}]/methods` with the module's token and
`x-ms-edge-moduleId`, as to IoT Edge's hub: allowed for the modules of its own Edge device and
for the devices in the Edge device's scope, refused elsewhere.
"""

from __future__ import annotations

import base64
import ssl
import time
import urllib.error
import urllib.request
from urllib.parse import quote

from azure.iot.device import IoTHubDeviceClient, IoTHubModuleClient, MethodResponse
from azure.iot.device.common.auth import signing_mechanism

from conftest import node_json, test_address
from dps_helpers import stored_events
from test_amqp_module_inputs import edge_device
from test_amqp_modules import sas_module

IRONHUB_ADDRESS = test_address("127.0.0.48")


def module_env(hub, connection_string: str) -> dict:
    return {"NODE_EXTRA_CA_CERTS": hub.ca_file,
            "MODULE_CONNECTION_STRING": f"{connection_string};GatewayHostName={hub.hostname}"}


def answering(client, name: str):
    """Answers method `name` with 200 and the request's payload."""
    def handler(request):
        if request.name == name:
            client.send_method_response(MethodResponse.create_from_method_request(request, 200, {"echo": request.payload}))
        else:
            client.send_method_response(MethodResponse.create_from_method_request(request, 404, None))
    client.on_method_request_received = handler


def test_module_telemetry_over_https_is_the_module_s(hub):
    device_id = "http-mod"
    _, cs = sas_module(hub, hub.registry_manager(), device_id, "sensor")
    out = node_json("module_http.js", "send", "--text", "t", "--message-id", "mid-1", env=module_env(hub, cs))
    assert out == {"single": "MessageEnqueued", "batch": "MessageEnqueued"}, out
    events = stored_events(hub, device_id)
    assert [e["body"] for e in events] == ["t", "t-1", "t-2"], events
    for e in events:
        assert e["systemProperties"]["iothub-connection-device-id"] == device_id
        assert e["systemProperties"]["iothub-connection-module-id"] == "sensor", e
    assert events[0]["systemProperties"]["message-id"] == "mid-1"
    assert events[0]["applicationProperties"] == {"n": "t"}


def post_module_event(hub, path: str, token: str) -> int:
    context = ssl.create_default_context(cafile=hub.ca_file)
    request = urllib.request.Request(f"https://{hub.hostname}{path}?api-version=2021-04-12", data=b"raw",
                                     method="POST", headers={"Authorization": token})
    try:
        with urllib.request.urlopen(request, context=context, timeout=20) as response:
            return response.status
    except urllib.error.HTTPError as e:
        return e.code


def module_token(hub, device_id: str, module_id: str, key: str) -> str:
    """A module's SAS token, signed by the Python SDK's own signer."""
    resource = quote(f"{hub.hostname}/devices/{device_id}/modules/{module_id}", safe="")
    expiry = int(time.time()) + 3600
    sig = signing_mechanism.SymmetricKeySigningMechanism(key).sign(f"{resource}\n{expiry}")
    return f"SharedAccessSignature sr={resource}&sig={quote(sig, safe='')}&se={expiry}"


def test_module_telemetry_on_the_module_path_and_its_refusals(hub):
    device_id = "http-mod-path"
    rm = hub.registry_manager()
    key, _ = sas_module(hub, rm, device_id, "m1")
    sas_module(hub, rm, device_id, "m2")
    token = module_token(hub, device_id, "m1", key)
    assert post_module_event(hub, f"/devices/{device_id}/modules/m1/messages/events", token) == 204
    # Another module's path, or a forged key: 401, nothing stored.
    assert post_module_event(hub, f"/devices/{device_id}/modules/m2/messages/events", token) == 401
    forged = module_token(hub, device_id, "m1", base64.b64encode(b"x" * 32).decode())
    assert post_module_event(hub, f"/devices/{device_id}/modules/m1/messages/events", forged) == 401
    events = stored_events(hub, device_id)
    assert [(e["body"], e["systemProperties"]["iothub-connection-module-id"]) for e in events] == [("raw", "m1")]


def test_a_module_invokes_methods_in_its_edge_scope_only(hub):
    edge_id = "http-edge"
    edge_device(hub, edge_id, {})
    rm = hub.registry_manager()
    _, caller_cs = sas_module(hub, rm, edge_id, "caller")
    _, responder_cs = sas_module(hub, rm, edge_id, "responder")
    edge = rm.get_device(edge_id)
    # A child device in the Edge device's scope, and a device outside it.
    rm.create_device_with_sas("http-child", None, None, "enabled")
    child = rm.get_device("http-child")
    child.device_scope = edge.device_scope
    rm.protocol.devices.create_or_update_identity("http-child", child, "*")
    stranger_key = rm.create_device_with_sas("http-stranger", None, None, "enabled").authentication.symmetric_key.primary_key
    ca = open(hub.ca_file).read()
    responder = IoTHubModuleClient.create_from_connection_string(responder_cs, server_verification_cert=ca)
    child_key = rm.get_device("http-child").authentication.symmetric_key.primary_key
    child_client = IoTHubDeviceClient.create_from_connection_string(
        f"HostName={hub.hostname};DeviceId=http-child;SharedAccessKey={child_key}", server_verification_cert=ca)
    stranger = IoTHubDeviceClient.create_from_connection_string(
        f"HostName={hub.hostname};DeviceId=http-stranger;SharedAccessKey={stranger_key}", server_verification_cert=ca)
    env = module_env(hub, caller_cs)
    try:
        for client in (responder, child_client, stranger):
            client.connect()
            answering(client, "ping")
        out = node_json("module_http.js", "invoke", "--device-id", edge_id, "--module-id", "responder",
                        "--method", "ping", env=env)
        assert out["result"] == {"status": 200, "payload": {"echo": {"from": "http"}}}, out
        out = node_json("module_http.js", "invoke", "--device-id", "http-child", "--method", "ping", env=env)
        assert out["result"]["status"] == 200, out
        out = node_json("module_http.js", "invoke", "--device-id", "http-stranger", "--method", "ping", env=env)
        assert out["refused"]["statusCode"] == 401, out
        out = node_json("module_http.js", "invoke", "--device-id", "http-child", "--module-id", "x",
                        "--method", "ping", env=env)
        assert out["refused"]["statusCode"] == 401, out
    finally:
        for client in (responder, child_client, stranger):
            client.shutdown()
