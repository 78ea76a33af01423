"""Twin queries on the registry's own fields (`status`, `connectionState`,
`capabilities.iotEdge`, `authenticationType`) through the Python service SDK
(`IoTHubRegistryManager.query_iot_hub`): the store narrows its scan on them (issue 16), and
the answer must still be exactly the devices IoT Hub would give, page after page, with values
compared by type and case as the query language does.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from azure.iot.hub.models import QuerySpecification

from test_query import post_query

IRONHUB_ADDRESS = "127.0.0.93"

# id: (status, connected, IoT Edge, authentication)
FLEET = {
    "st-01": ("enabled", True, False, "sas"),
    "st-02": ("disabled", False, False, "sas"),
    "st-03": ("enabled", False, True, "sas"),
    "st-04": ("disabled", False, True, "selfSigned"),
    "st-05": ("enabled", True, False, "sas"),
    "st-06": ("enabled", False, False, "selfSigned"),
}
THUMBPRINT = "AB" * 20


def query_ids(rm, text: str, page_size: int | None = None) -> list[str]:
    """The device ids of every page of a query, in the order they came."""
    ids, token = [], None
    for _ in range(50):
        result = rm.query_iot_hub(QuerySpecification(query=text), token, page_size)
        ids.extend(item.device_id for item in result.items)
        token = result.continuation_token
        if not token:
            return ids
    raise AssertionError(f"paging {text!r} does not end")


def expected(predicate) -> list[str]:
    return sorted(d for d, spec in FLEET.items() if predicate(*spec))


@pytest.fixture(scope="module")
def fleet(hub):
    """The devices of FLEET, with the connected ones held open by the Python device SDK
    (the hub records the connection before it answers CONNACK)."""
    from azure.iot.device import IoTHubDeviceClient

    rm = hub.registry_manager()
    clients = []
    try:
        for device_id, (status, connected, edge, auth) in FLEET.items():
            if auth == "sas":
                device = rm.create_device_with_sas(device_id, None, None, status, iot_edge=edge)
            else:
                device = rm.create_device_with_x509(device_id, THUMBPRINT, THUMBPRINT, status, iot_edge=edge)
            if connected:
                key = device.authentication.symmetric_key.primary_key
                client = IoTHubDeviceClient.create_from_connection_string(
                    f"HostName={hub.hostname};DeviceId={device_id};SharedAccessKey={key}",
                    server_verification_cert=Path(hub.ca_file).read_text())
                client.connect()
                clients.append(client)
        for device_id, (_, connected, _, _) in FLEET.items():
            state = rm.get_device(device_id).connection_state
            assert state == ("Connected" if connected else "Disconnected"), device_id
        yield FLEET
    finally:
        for client in clients:
            client.shutdown()


def test_status_queries_answer_exactly_the_devices_in_that_state(hub, rm, fleet):
    disabled = expected(lambda status, *_: status == "disabled")
    enabled = expected(lambda status, *_: status == "enabled")
    assert query_ids(rm, "SELECT * FROM devices WHERE status = 'disabled'") == disabled
    assert query_ids(rm, "SELECT * FROM devices WHERE status = 'enabled'") == enabled
    # A page a device: the continuation resumes after what the narrowed scan skipped.
    assert query_ids(rm, "SELECT * FROM devices WHERE status = 'enabled'", page_size=1) == enabled
    assert query_ids(rm, "SELECT * FROM devices WHERE status IN ['disabled', 'gone']") == disabled
    # Own field names are matched ignoring case, values exactly.
    assert query_ids(rm, "SELECT * FROM devices WHERE STATUS = 'disabled'") == disabled
    assert query_ids(rm, "SELECT * FROM devices WHERE status = 'Disabled'") == []
    assert query_ids(rm, "SELECT * FROM devices WHERE status = 0") == []
    # Not narrowed, still exact.
    assert query_ids(rm, "SELECT * FROM devices WHERE status != 'disabled'") == enabled
    r = post_query(hub, json.dumps({"query": "SELECT COUNT() AS n FROM devices WHERE status = 'disabled'"}))
    assert r.status_code == 200 and r.json() == [{"n": len(disabled)}], r.text


def test_connection_state_queries_answer_exactly_the_connected_devices(rm, fleet):
    connected = expected(lambda _s, connected, *_: connected)
    disconnected = expected(lambda _s, connected, *_: not connected)
    assert query_ids(rm, "SELECT * FROM devices WHERE connectionState = 'Connected'") == connected
    assert query_ids(rm, "SELECT * FROM devices WHERE connectionState = 'Disconnected'",
                     page_size=2) == disconnected
    assert query_ids(rm, "SELECT * FROM devices WHERE connectionState = 'connected'") == []
    assert query_ids(rm, "SELECT * FROM devices WHERE status = 'disabled' AND "
                         "connectionState = 'Disconnected'") == expected(
        lambda status, connected, *_: status == "disabled" and not connected)
    twins = rm.query_iot_hub(QuerySpecification(
        query="SELECT deviceId, connectionState FROM devices WHERE connectionState = 'Connected'")).items
    assert sorted(t.device_id for t in twins) == connected
    assert {t.connection_state for t in twins} == {"Connected"}


def test_edge_and_authentication_queries(rm, fleet):
    edge = expected(lambda _s, _c, edge, _a: edge)
    assert query_ids(rm, "SELECT * FROM devices WHERE capabilities.iotEdge = true") == edge
    assert query_ids(rm, "SELECT * FROM devices WHERE capabilities.iotEdge = 'true'") == []
    assert query_ids(rm, "SELECT * FROM devices WHERE authenticationType = 'selfSigned'") == expected(
        lambda *spec: spec[3] == "selfSigned")
    assert query_ids(rm, "SELECT * FROM devices WHERE authenticationType IN ['sas', 'none'] "
                         "AND capabilities.iotEdge = false") == expected(
        lambda _s, _c, edge, auth: auth == "sas" and not edge)
