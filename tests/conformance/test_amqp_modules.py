"""Module identities and SASL PLAIN logins over AMQP, with real clients: the Node
`ModuleClient` (`azure-iot-device-amqp`'s `Amqp` on 5671 and `AmqpWs` on 443, a module
token put on `$cbs`) for a module's telemetry, twin, methods and input link; uamqp's
`SASLPlain` and the Node SDKs' AMQP layer (rhea) logging in with SASL PLAIN as a device
(`{deviceId}@sas.{hub}`), a module (`{deviceId}/{moduleId}@sas.{hub}`) and a policy
(`{policy}@sas.root.{hub}`); and the refusals (wrong key, another identity's token, an
expired token), after which nothing is stored and nobody is shown connected.
"""

from __future__ import annotations

import json

import pytest
from azure.iot.hub.models import CloudToDeviceMethod, Twin, TwinProperties
from msrest.exceptions import HttpOperationError

from dps_helpers import sas, stored_events, wait_for
from test_amqp_device import TRANSPORTS, NodeDevice, run_raw, sas_device

IRONHUB_ADDRESS = "127.0.0.242"
WRONG_KEY = "A" * 43 + "="


@pytest.fixture(scope="module")
def registry(amqp_registry):
    """conftest's registry manager that sends C2D over AMQP trusting the server's CA."""
    return amqp_registry


def sas_module(hub, registry, device_id: str, module_id: str) -> tuple[str, str]:
    """A module (its device created first when missing): its key and connection string."""
    try:
        registry.get_device(device_id)
    except HttpOperationError:
        registry.create_device_with_sas(device_id, None, None, "enabled")
    key = registry.create_module_with_sas(device_id, module_id, None, "", "").authentication.symmetric_key.primary_key
    return key, f"HostName={hub.hostname};DeviceId={device_id};ModuleId={module_id};SharedAccessKey={key}"


@TRANSPORTS
def test_module_client_telemetry_twin_method_and_inputs(hub, registry, transport):
    device_id = f"amqp-mod-{transport}"
    _, cs = sas_module(hub, registry, device_id, "sensor")
    module = NodeDevice(hub, transport, cs)
    try:
        assert module.opened["event"] == "open", module.opened
        module.run("send", text='{"t": 7}', messageId="mod-1", contentType="application/json",
                   properties={"k": "v"})
        [event] = stored_events(hub, device_id)
        assert event["body"] == {"t": 7}
        assert event["applicationProperties"] == {"k": "v"}
        system = event["systemProperties"]
        assert system["iothub-connection-device-id"] == device_id
        assert system["iothub-connection-module-id"] == "sensor"
        assert system["message-id"] == "mod-1"
        assert json.loads(system["iothub-connection-auth-method"])["type"] == "sas"
        # A module's connection is its own, not its device's.
        assert registry.get_device(device_id).connection_state == "Disconnected"

        got = module.run("twin")
        assert got["desired"]["$version"] == 1
        module.run("report", patch={"temp": 21})
        assert registry.get_module_twin(device_id, "sensor").properties.reported["temp"] == 21
        assert "temp" not in registry.get_twin(device_id).properties.reported, "the device's twin is its own"

        module.run("desired")
        twin = registry.get_module_twin(device_id, "sensor")
        registry.update_module_twin(device_id, "sensor", Twin(properties=TwinProperties(desired={"fw": "2"})),
                                    twin.etag)
        delta = module.event("desired", lambda m: "fw" in m["delta"])["delta"]
        assert delta["fw"] == "2" and delta["$version"] == 2

        module.run("method", name="reset", status=200, answer={"done": True})
        result = registry.invoke_device_module_method(
            device_id, "sensor",
            CloudToDeviceMethod(method_name="reset", payload={"n": 1}, response_timeout_in_seconds=10))
        assert result.status == 200 and result.payload == {"done": True}
        assert module.event("method")["payload"] == {"n": 1}
        # The device itself is not connected: a call to it finds nobody.
        with pytest.raises(HttpOperationError) as e:
            registry.invoke_device_method(device_id, CloudToDeviceMethod(method_name="reset", payload={}))
        assert e.value.response.status_code == 404

        # The input messages link attaches (IoT Hub routes nothing to it; an IoT Edge hub would)
        # and the module goes on working.
        module.run("inputs")
        module.run("send", text="after inputs")
    finally:
        module.close()
    assert [e["body"] for e in stored_events(hub, device_id)] == [{"t": 7}, "after inputs"]


@TRANSPORTS
def test_module_refusals(hub, registry, transport):
    device_id = f"amqp-modbad-{transport}"
    key, _ = sas_module(hub, registry, device_id, "m1")
    sas_module(hub, registry, device_id, "m2")
    # A wrong key, then m1's key for m2: the module token is refused on $cbs.
    for module_id, k in (("m1", WRONG_KEY), ("m2", key)):
        module = NodeDevice(hub, transport,
                            f"HostName={hub.hostname};DeviceId={device_id};ModuleId={module_id};SharedAccessKey={k}")
        try:
            assert module.opened["event"] == "openError", module.opened
            assert module.opened["error"]["name"] == "UnauthorizedError", module.opened
        finally:
            module.close()
    assert stored_events(hub, device_id) == []


def test_a_module_token_does_not_open_its_device_s_links(hub, registry):
    """A module's token proves the module, not its device: the device's address is refused."""
    device_id = "amqp-modscope"
    key, _ = sas_module(hub, registry, device_id, "m")
    # The device SDKs' AMQP layer, putting the module's token for the device's audience: refused.
    out = run_raw(hub, "--device", device_id, "--key", key, "--address", f"/devices/{device_id}/messages/events")
    assert out["putToken"] != "ok", out
    assert "amqp:unauthorized-access" in (out["attach"], out.get("send")), out
    assert stored_events(hub, device_id) == []


# -- SASL PLAIN ---------------------------------------------------------------------------------


def plain_send(hub, user: str, password: str, target: str, to: str | None = None) -> str:
    """Sends one message (message id `p-1`, `to` if given) to `target` with uamqp over a
    connection that logs in with SASL PLAIN; "ok" or the error's text."""
    import uamqp
    from uamqp.authentication import SASLPlain

    client = uamqp.SendClient(f"amqps://{hub.hostname}{target}",
                              auth=SASLPlain(hub.hostname, user, password, verify=hub.ca_file))
    try:
        properties = uamqp.message.MessageProperties(message_id="p-1", to=to)
        client.send_message(uamqp.Message(b"plain", properties=properties))
        return "ok"
    except Exception as e:  # noqa: BLE001 - the client's refusal, whatever its class
        return f"{type(e).__name__}: {e}"
    finally:
        client.close()


def hub_name(hub) -> str:
    return hub.hostname.split(".")[0]


def test_sasl_plain_device_and_module(hub, registry):
    device_id = "amqp-plain"
    key, _ = sas_device(hub, registry, device_id)
    module_key, _ = sas_module(hub, registry, device_id, "plainmod")
    token = sas(f"{hub.hostname}/devices/{device_id}", key)
    assert plain_send(hub, f"{device_id}@sas.{hub_name(hub)}", token,
                      f"/devices/{device_id}/messages/events") == "ok"
    module_token = sas(f"{hub.hostname}/devices/{device_id}/modules/plainmod", module_key)
    assert plain_send(hub, f"{device_id}/plainmod@sas.{hub_name(hub)}", module_token,
                      f"/devices/{device_id}/modules/plainmod/messages/events") == "ok"
    device_event, module_event = stored_events(hub, device_id)
    assert device_event["body"] == module_event["body"] == "plain"
    assert device_event["systemProperties"]["message-id"] == "p-1"
    assert "iothub-connection-module-id" not in device_event["systemProperties"]
    assert module_event["systemProperties"]["iothub-connection-module-id"] == "plainmod"

    # The Node SDKs' AMQP layer (rhea) logging in with PLAIN, as the C SDK does.
    out = run_raw(hub, "--device", device_id, "--key", key, "--address", f"/devices/{device_id}/messages/events",
                  "--plain")
    assert out == {"putToken": "plain", "attach": "ok", "send": "ok"}, out
    assert len(stored_events(hub, device_id)) == 3
    wait_for(lambda: registry.get_device(device_id).connection_state == "Disconnected", what="the disconnection")


def test_sasl_plain_refusals_store_nothing(hub, registry):
    device_id = "amqp-plainbad"
    key, _ = sas_device(hub, registry, device_id)
    other_key, _ = sas_device(hub, registry, f"{device_id}-other")
    module_key, _ = sas_module(hub, registry, device_id, "m")
    user = f"{device_id}@sas.{hub_name(hub)}"
    events = f"/devices/{device_id}/messages/events"
    own = f"{hub.hostname}/devices/{device_id}"
    for what, user_name, password in [
        ("a wrong key", user, sas(own, WRONG_KEY)),
        ("another device's key", user, sas(own, other_key)),
        ("another device's token", user, sas(f"{hub.hostname}/devices/{device_id}-other", other_key)),
        ("an expired token", user, sas(own, key, ttl=-60)),
        ("the module's token as the device", user, sas(f"{own}/modules/m", module_key)),
        ("the device's token as the module", f"{device_id}/m@sas.{hub_name(hub)}", sas(own, key)),
        ("not a token", user, "secret"),
    ]:
        result = plain_send(hub, user_name, password, events)
        assert result != "ok", what
    # rhea sees the refusal as the connection's close with IoT Hub's condition.
    out = run_raw(hub, "--device", device_id, "--key", WRONG_KEY, "--address", events, "--plain")
    assert out == {"connect": "amqp:unauthorized-access"}, out
    assert stored_events(hub, device_id) == []
    assert registry.get_device(device_id).connection_state == "Disconnected"
    # The same device with its own token gets in.
    assert plain_send(hub, user, sas(own, key), events) == "ok"
    assert len(stored_events(hub, device_id)) == 1


def test_sasl_plain_policy_sends_cloud_to_device(hub, registry):
    """`{policy}@sas.root.{hub}`: the policy's rights decide (ServiceConnect sends C2D)."""
    device_id = "amqp-plainc2d"
    sas_device(hub, registry, device_id)
    parts = hub.connection_string_parts()
    policy = parts["SharedAccessKeyName"]
    token = sas(hub.hostname, parts["SharedAccessKey"]) + f"&skn={policy}"
    user = f"{policy}@sas.root.{hub_name(hub)}"

    def send(password: str) -> str:
        return plain_send(hub, user, password, "/messages/devicebound",
                          to=f"/devices/{device_id}/messages/devicebound")

    assert send(token) == "ok"
    assert registry.get_device(device_id).cloud_to_device_message_count == 1
    wrong = sas(hub.hostname, WRONG_KEY) + f"&skn={policy}"
    assert send(wrong) != "ok"
    assert registry.get_device(device_id).cloud_to_device_message_count == 1
