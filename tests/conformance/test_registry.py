"""IoT Hub device registry through the real `azure-iot-hub` service SDK
(`docs/protocol/hub-service.md`).

Every call goes through `IoTHubRegistryManager` exactly as an application would make it; the
assertions are what such an application sees: return values, `HttpOperationError` status codes,
and what a later read returns.
"""

from __future__ import annotations

import base64
import itertools
import os
import time

import pytest
import requests
from msrest.exceptions import HttpOperationError

from azure.iot.hub.models import (
    AuthenticationMechanism,
    ExportImportDevice,
    SymmetricKey,
    X509Thumbprint,
)

IRONHUB_ADDRESS = "127.0.0.2"

_counter = itertools.count(1)


def uid(prefix: str) -> str:
    """A device id no other test in this module uses."""
    return f"{prefix}-{next(_counter)}"


def new_key(n: int = 32) -> str:
    return base64.b64encode(os.urandom(n)).decode()


def http_error(excinfo) -> tuple[int, requests.Response]:
    response = excinfo.value.response
    return response.status_code, response


def assert_error(excinfo, status: int, error_code: str | None = None) -> None:
    """The SDK raised HttpOperationError with `status`; with `error_code`, the body and the
    `iothub-errorcode` header name it the way IoT Hub does (Node's SDK parses
    `{"Message":"ErrorCode:<code>;..."}`)."""
    code, response = http_error(excinfo)
    assert code == status, f"expected HTTP {status}, got {code}: {response.text}"
    if error_code is not None:
        assert response.headers.get("iothub-errorcode") == error_code, (
            f"iothub-errorcode header: {response.headers.get('iothub-errorcode')!r}, "
            f"body: {response.text}"
        )
        body = response.json()
        assert body.get("Message", "").startswith(f"ErrorCode:{error_code};"), body


def _sas(pk=None, sk=None):
    return AuthenticationMechanism(type="sas", symmetric_key=SymmetricKey(primary_key=pk, secondary_key=sk))


def ids_in_registry(rm) -> set[str]:
    return {d.device_id for d in rm.get_devices(1000)}


# --- CRUD ---------------------------------------------------------------------------------------


def test_sas_device_lifecycle(rm):
    """docs/protocol/hub-service.md, "Registry calls": create, get, update with etag, 409, 412,
    delete (If-Match "*"), 404."""
    device_id = uid("d")
    pk, sk = new_key(), new_key()

    created = rm.create_device_with_sas(device_id, pk, sk, "enabled")
    assert created.device_id == device_id
    assert created.etag, "create must return an etag"
    assert created.status == "enabled"
    assert created.authentication.type == "sas"
    assert created.authentication.symmetric_key.primary_key == pk
    assert created.authentication.symmetric_key.secondary_key == sk
    assert created.connection_state == "Disconnected"
    assert created.generation_id

    got = rm.get_device(device_id)
    assert got.device_id == device_id
    assert got.etag == created.etag
    assert got.generation_id == created.generation_id
    assert got.authentication.symmetric_key.primary_key == pk

    updated = rm.update_device_with_sas(device_id, created.etag, pk, sk, "disabled")
    assert updated.status == "disabled"
    assert updated.etag and updated.etag != created.etag
    assert updated.generation_id == created.generation_id
    assert rm.get_device(device_id).status == "disabled"

    # Creating an id that exists: the SDK sends PUT without If-Match.
    with pytest.raises(HttpOperationError) as e:
        rm.create_device_with_sas(device_id, new_key(), new_key(), "enabled")
    assert_error(e, 409, "DeviceAlreadyExists")

    # A stale etag (the one from before the update) and a bogus one.
    for stale in (created.etag, "bogus"):
        with pytest.raises(HttpOperationError) as e:
            rm.update_device_with_sas(device_id, stale, new_key(), new_key(), "enabled")
        assert_error(e, 412, "PreconditionFailed")
    after = rm.get_device(device_id)
    assert after.etag == updated.etag, "a rejected write must change nothing"
    assert after.status == "disabled"
    assert after.authentication.symmetric_key.primary_key == pk

    rm.delete_device(device_id)  # SDK sends If-Match: "*" and expects 204
    with pytest.raises(HttpOperationError) as e:
        rm.get_device(device_id)
    assert_error(e, 404, "DeviceNotFound")

    # Deleting again is a 404 too.
    with pytest.raises(HttpOperationError) as e:
        rm.delete_device(device_id)
    assert_error(e, 404, "DeviceNotFound")


def test_etag_header_and_content_type(rm):
    """IoT Hub answers with a quoted `ETag` header equal to the body's etag, and JSON content."""
    from azure.iot.hub.models import Device

    device_id = uid("hdr")
    device = Device(device_id=device_id, status="enabled", authentication=_sas())
    raw = rm.protocol.devices.create_or_update_identity(device_id, device, raw=True)
    assert raw.response.status_code == 200
    assert raw.response.headers["ETag"] == f'"{raw.output.etag}"'
    assert raw.response.headers["Content-Type"].startswith("application/json")
    raw = rm.protocol.devices.get_identity(device_id, raw=True)
    assert raw.response.headers["ETag"] == f'"{raw.output.etag}"'


def test_update_of_missing_device_is_404(rm):
    with pytest.raises(HttpOperationError) as e:
        rm.update_device_with_sas(uid("missing"), "MA==", new_key(), new_key(), "enabled")
    assert_error(e, 404, "DeviceNotFound")


def test_delete_with_etag(rm):
    device_id = uid("del")
    created = rm.create_device_with_sas(device_id, new_key(), new_key(), "enabled")
    with pytest.raises(HttpOperationError) as e:
        rm.delete_device(device_id, etag="bogus")
    assert_error(e, 412, "PreconditionFailed")
    assert rm.get_device(device_id).etag == created.etag
    rm.delete_device(device_id, etag=created.etag)
    assert device_id not in ids_in_registry(rm)


def test_keys_generated_when_absent(rm):
    """`None` keys are left out of the body by msrest (`"symmetricKey":{}`); empty strings are
    sent as `""`. Either way the server generates both keys, and they differ. (The C# SDK maps
    empty keys to "absent" before sending; ironhub does the same on the server side.)"""
    for keys in ((None, None), ("", "")):
        device_id = uid("gen")
        created = rm.create_device_with_sas(device_id, *keys, "enabled")
        sym = created.authentication.symmetric_key
        assert sym.primary_key and sym.secondary_key, f"keys {keys!r}: {sym}"
        assert sym.primary_key != sym.secondary_key
        for k in (sym.primary_key, sym.secondary_key):
            assert 16 <= len(base64.b64decode(k, validate=True)) <= 64, k
        got = rm.get_device(device_id).authentication.symmetric_key
        assert (got.primary_key, got.secondary_key) == (sym.primary_key, sym.secondary_key)


def test_x509_self_signed_device(rm):
    device_id = uid("x509")
    primary = os.urandom(20).hex().upper()
    secondary = os.urandom(20).hex().upper()
    created = rm.create_device_with_x509(device_id, primary, secondary, "enabled")
    assert created.etag
    assert created.authentication.type == "selfSigned"

    got = rm.get_device(device_id)
    assert got.authentication.type == "selfSigned"
    tp = got.authentication.x509_thumbprint
    assert tp.primary_thumbprint.upper() == primary
    assert tp.secondary_thumbprint.upper() == secondary

    # And it can be switched to SAS with an etag.
    updated = rm.update_device_with_sas(device_id, got.etag, new_key(), new_key(), "enabled")
    assert updated.authentication.type == "sas"


def test_certificate_authority_device(rm):
    device_id = uid("ca")
    created = rm.create_device_with_certificate_authority(device_id, "enabled")
    assert created.etag
    assert created.authentication.type == "certificateAuthority"
    assert rm.get_device(device_id).authentication.type == "certificateAuthority"


def test_list_devices_and_statistics(rm):
    before = rm.get_device_registry_statistics()
    enabled = [uid("list"), uid("list")]
    disabled = uid("list")
    for d in enabled:
        rm.create_device_with_sas(d, new_key(), new_key(), "enabled")
    rm.create_device_with_sas(disabled, new_key(), new_key(), "disabled")

    everything = rm.get_devices(1000)
    by_id = {d.device_id: d for d in everything}
    for d in enabled + [disabled]:
        assert d in by_id, f"{d} missing from get_devices"
    assert by_id[disabled].status == "disabled"
    assert by_id[enabled[0]].etag

    assert len(rm.get_devices(10)) == min(10, len(everything))
    assert len(rm.get_devices(2)) == 2

    after = rm.get_device_registry_statistics()
    assert after.total_device_count == before.total_device_count + 3
    assert after.enabled_device_count == before.enabled_device_count + 2
    assert after.disabled_device_count == before.disabled_device_count + 1
    assert after.total_device_count == len(everything)
    assert after.enabled_device_count + after.disabled_device_count == after.total_device_count


def test_service_statistics(rm):
    stats = rm.get_service_statistics()
    assert stats.connected_device_count is not None
    assert stats.connected_device_count >= 0


# --- bulk ---------------------------------------------------------------------------------------


def test_bulk_create_update_delete(rm):
    """`bulk_create_or_update_devices` POSTs `[ExportImportDevice]` to /devices; importMode is
    one of create, update, updateIfMatchETag, delete, deleteIfMatchETag (+ twin modes)."""
    a, b, c = uid("bulk"), uid("bulk"), uid("bulk")
    pk = new_key()
    result = rm.bulk_create_or_update_devices(
        [
            ExportImportDevice(id=a, import_mode="create", status="enabled", authentication=_sas(pk, new_key())),
            # No authentication at all: SAS with generated keys.
            ExportImportDevice(id=b, import_mode="create", status="disabled"),
            ExportImportDevice(
                id=c,
                import_mode="create",
                status="enabled",
                authentication=AuthenticationMechanism(
                    type="selfSigned",
                    x509_thumbprint=X509Thumbprint(primary_thumbprint=os.urandom(20).hex().upper()),
                ),
            ),
        ]
    )
    assert result.is_successful is True, result.errors
    assert result.errors == []
    assert rm.get_device(a).authentication.symmetric_key.primary_key == pk
    got_b = rm.get_device(b)
    assert got_b.status == "disabled"
    assert got_b.authentication.type == "sas"
    assert got_b.authentication.symmetric_key.primary_key
    assert rm.get_device(c).authentication.type == "selfSigned"

    # updateIfMatchETag with the right etag, update (unconditional) on another.
    etag_a = rm.get_device(a).etag
    result = rm.bulk_create_or_update_devices(
        [
            ExportImportDevice(id=a, import_mode="updateIfMatchETag", e_tag=etag_a, status="disabled", authentication=_sas(pk, new_key())),
            ExportImportDevice(id=b, import_mode="update", status="enabled", authentication=_sas(new_key(), new_key())),
        ]
    )
    assert result.is_successful is True, result.errors
    assert rm.get_device(a).status == "disabled"
    assert rm.get_device(a).etag != etag_a
    assert rm.get_device(b).status == "enabled"

    result = rm.bulk_create_or_update_devices(
        [
            ExportImportDevice(id=b, import_mode="delete"),
            ExportImportDevice(id=c, import_mode="deleteIfMatchETag", e_tag=rm.get_device(c).etag),
        ]
    )
    assert result.is_successful is True, result.errors
    remaining = ids_in_registry(rm)
    assert b not in remaining and c not in remaining and a in remaining


def test_bulk_rejected_writes_nothing(rm):
    """A batch with a failing entry answers 400 with the error per device, and (ironhub's
    all-or-nothing rule) writes none of the batch."""
    existing = uid("bulkx")
    created = rm.create_device_with_sas(existing, new_key(), new_key(), "enabled")
    fresh = uid("bulkx")
    batch = [
        ExportImportDevice(id=fresh, import_mode="create", status="enabled"),
        ExportImportDevice(id=existing, import_mode="create", status="enabled"),
    ]

    result = rm.bulk_create_or_update_devices(batch)
    assert result.is_successful is False
    assert [e.device_id for e in result.errors] == [existing], result.errors
    assert result.errors[0].error_code == "DeviceAlreadyExists"
    assert result.errors[0].error_status

    # The status code itself (the public method hides it: it accepts 200 and 400).
    raw = rm.protocol.bulk_registry.update_registry(batch, raw=True)
    assert raw.response.status_code == 400
    assert raw.response.json()["isSuccessful"] is False

    # A wrong etag on updateIfMatchETag is an error too.
    result = rm.bulk_create_or_update_devices(
        [
            ExportImportDevice(id=fresh, import_mode="create", status="enabled"),
            ExportImportDevice(id=existing, import_mode="updateIfMatchETag", e_tag="bogus", status="disabled"),
        ]
    )
    assert result.is_successful is False
    assert [e.device_id for e in result.errors] == [existing], result.errors
    assert result.errors[0].error_code == "PreconditionFailed"

    assert fresh not in ids_in_registry(rm), "a rejected batch must not create anything"
    after = rm.get_device(existing)
    assert after.etag == created.etag and after.status == "enabled"

    raw = rm.protocol.bulk_registry.update_registry(
        [ExportImportDevice(id=fresh, import_mode="create", status="enabled")], raw=True
    )
    assert raw.response.status_code == 200
    assert raw.response.json() == {"isSuccessful": True, "errors": [], "warnings": []}


# --- validation ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "bad_id",
    # IoT Hub's identity-registry page: `+ #` are not supported; `;` is not in its list.
    ["x" * 129, "has/slash", "has space", "semi;colon", "quote\"d", "plus+sign", "hash#sign"],
    ids=["129-chars", "slash", "space", "semicolon", "double-quote", "plus", "hash"],
)
def test_bad_device_id_is_400_and_creates_nothing(rm, bad_id):
    before = rm.get_device_registry_statistics().total_device_count
    with pytest.raises(HttpOperationError) as e:
        rm.create_device_with_sas(bad_id, new_key(), new_key(), "enabled")
    assert_error(e, 400)
    assert bad_id not in ids_in_registry(rm)
    assert rm.get_device_registry_statistics().total_device_count == before


def test_longest_and_special_device_ids_work(rm):
    """128 characters and IoT Hub's allowed specials `- . % _ * ? ! ( ) , : = @ $ '`."""
    for device_id in ("y" * 128, "sp-1.a_b:c=d@e$f'g(h)!,*%?"):
        created = rm.create_device_with_sas(device_id, new_key(), new_key(), "enabled")
        assert created.device_id == device_id
        assert rm.get_device(device_id).etag == created.etag
        assert device_id in ids_in_registry(rm)
        rm.delete_device(device_id)


def test_invalid_key_is_400(rm):
    device_id = uid("badkey")
    with pytest.raises(HttpOperationError) as e:
        rm.create_device_with_sas(device_id, "not base64!", new_key(), "enabled")
    assert_error(e, 400)
    assert device_id not in ids_in_registry(rm)


# --- authentication -----------------------------------------------------------------------------


def test_wrong_key_is_401(hub, rm):
    parts = hub.connection_string_parts()
    parts["SharedAccessKey"] = new_key(64)
    bad_cs = ";".join(f"{k}={v}" for k, v in parts.items())
    bad = hub.registry_manager(bad_cs)
    device_id = uid("auth")
    with pytest.raises(HttpOperationError) as e:
        bad.create_device_with_sas(device_id, new_key(), new_key(), "enabled")
    assert_error(e, 401, "IotHubUnauthorizedAccess")
    with pytest.raises(HttpOperationError) as e:
        bad.get_devices(10)
    assert_error(e, 401)
    assert device_id not in ids_in_registry(rm)


def test_unknown_policy_is_401(hub):
    parts = hub.connection_string_parts()
    parts["SharedAccessKeyName"] = "nosuchpolicy"
    bad = hub.registry_manager(";".join(f"{k}={v}" for k, v in parts.items()))
    with pytest.raises(HttpOperationError) as e:
        bad.get_devices(10)
    assert_error(e, 401)


def test_expired_token_is_401(hub, rm, monkeypatch):
    """The SDK signs a fresh token (TTL 3600 s) for every request from `time.time()`; run it
    two hours in the past and the token it sends expired an hour ago."""
    import azure.iot.hub.sastoken as sastoken

    class PastTime:
        @staticmethod
        def time():
            return time.time() - 7200

    device_id = uid("expired")
    monkeypatch.setattr(sastoken, "time", PastTime)
    with pytest.raises(HttpOperationError) as e:
        rm.create_device_with_sas(device_id, new_key(), new_key(), "enabled")
    assert_error(e, 401, "IotHubUnauthorizedAccess")
    monkeypatch.undo()

    # The same client with the real clock works again, and nothing was created.
    assert device_id not in ids_in_registry(rm)
    rm.create_device_with_sas(device_id, new_key(), new_key(), "enabled")


def policy_registry_manager(hub, policy: str):
    """A registry manager signing with one of the hub's policies (its connection string from
    `ironhub hub connection-string show --policy-name`)."""
    import json

    from conftest import run_cli

    out = run_cli("hub", "connection-string", "show", "--policy-name", policy, "--data-dir", str(hub.data_dir), check=True)
    return hub.registry_manager(json.loads(out.stdout)["connectionString"])


def test_twin_reads_are_allowed_to_service_connect_and_registry_read(hub, rm):
    """As in IoT Hub: the `service` policy (ServiceConnect) reads twins, like `registryRead`;
    `device` (DeviceConnect only) cannot."""
    device_id = uid("twin-rights")
    rm.create_device_with_sas(device_id, new_key(), new_key(), "enabled")
    for policy in ("service", "registryRead", "registryReadWrite", "iothubowner"):
        twin = policy_registry_manager(hub, policy).get_twin(device_id)
        assert twin.device_id == device_id, policy
    with pytest.raises(HttpOperationError) as e:
        policy_registry_manager(hub, "device").get_twin(device_id)
    assert_error(e, 401, "IotHubUnauthorizedAccess")
    # Device identities stay RegistryRead's: ServiceConnect alone cannot read them.
    with pytest.raises(HttpOperationError) as e:
        policy_registry_manager(hub, "service").get_device(device_id)
    assert_error(e, 401)


def test_request_body_over_the_limit_is_413_in_iot_hubs_shape(hub, rm):
    """A body over 512 KiB is refused with 413 and IoT Hub's error body; nothing is created."""
    # The SDK's own signed session gives the Authorization header it would send.
    token = rm.protocol.config.credentials.signed_session().headers["Authorization"]
    device_id = uid("huge")
    body = b'{"deviceId": "%s", "tags": "%s"}' % (device_id.encode(), b"x" * (512 * 1024))
    r = requests.put(
        f"https://{hub.hostname}/devices/{device_id}?api-version=2021-04-12",
        data=body, headers={"Authorization": token, "Content-Type": "application/json"},
        verify=hub.ca_file, timeout=30,
    )
    assert r.status_code == 413, r.text
    assert r.headers["iothub-errorcode"] == "MessageTooLarge"
    assert r.headers["content-type"].startswith("application/json")
    assert r.json()["Message"].startswith("ErrorCode:MessageTooLarge;"), r.text
    assert device_id not in ids_in_registry(rm)


def test_no_authorization_header_is_401(hub):
    r = requests.get(
        f"https://{hub.hostname}/devices?api-version=2021-04-12",
        verify=hub.ca_file,
        timeout=10,
    )
    assert r.status_code == 401, r.text


# --- durability ---------------------------------------------------------------------------------


def test_created_device_survives_kill9(hub, rm):
    """A 200 means durable: SIGKILL right after the answer, restart, and the device is there."""
    device_id = uid("durable")
    pk, sk = new_key(), new_key()
    created = rm.create_device_with_sas(device_id, pk, sk, "enabled")
    cs_before = hub.connection_string
    hub.kill9()
    hub.restart()
    assert hub.connection_string == cs_before, "restart must keep the hub's owner key"

    rm2 = hub.registry_manager()
    got = rm2.get_device(device_id)
    assert got.etag == created.etag
    assert got.generation_id == created.generation_id
    assert got.status == "enabled"
    assert got.authentication.symmetric_key.primary_key == pk
    assert got.authentication.symmetric_key.secondary_key == sk

    # And etags keep moving forward after the restart.
    updated = rm2.update_device_with_sas(device_id, got.etag, pk, sk, "disabled")
    assert updated.etag != created.etag


def _device_sas(host: str, device_id: str, key: str, ttl: int = 3600) -> str:
    import hashlib
    import hmac
    import urllib.parse

    sr = urllib.parse.quote(f"{host}/devices/{device_id}", safe="")
    se = str(int(time.time()) + ttl)
    sig = base64.b64encode(
        hmac.new(base64.b64decode(key), f"{sr}\n{se}".encode(), hashlib.sha256).digest()
    ).decode()
    return f"SharedAccessSignature sr={sr}&sig={urllib.parse.quote(sig, safe='')}&se={se}"


def _wait(predicate, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


def test_connection_state_after_kill9(hub, rm):
    """A device connected when the server is SIGKILLed is not connected after the restart until
    it reconnects: the registry must not keep showing `Connected` (direct-method callers and
    dashboards go by it)."""
    import ssl

    import paho.mqtt.client as mqtt

    device_id = uid("state")
    key = rm.create_device_with_sas(device_id, None, None, "enabled").authentication.symmetric_key.primary_key
    client = mqtt.Client(client_id=device_id, clean_session=False, protocol=mqtt.MQTTv311)
    client.username_pw_set(f"{hub.hostname}/{device_id}/?api-version=2021-04-12", _device_sas(hub.hostname, device_id, key))
    client.tls_set(ca_certs=hub.ca_file, tls_version=ssl.PROTOCOL_TLSv1_2)
    try:
        assert client.connect(hub.address, 8883, keepalive=60) == 0
        client.loop_start()
        _wait(lambda: rm.get_device(device_id).connection_state == "Connected", 10, "Connected")

        client.loop_stop()  # no reconnect from here on
        hub.kill9()
        hub.restart()
        rm2 = hub.registry_manager()
        got = rm2.get_device(device_id)
        assert got.connection_state == "Disconnected", (
            "after a restart, a device that has not reconnected must show Disconnected"
        )
        assert rm2.get_service_statistics().connected_device_count == 0
    finally:
        client.loop_stop()
        client.disconnect()

