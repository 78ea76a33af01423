"""The IoT Hub query language (`POST /devices/query`) against the real clients: the Tasmota
scenario of issue 9 (outlets report `powerState` with the Tasmota rule's publish, done here with
`mosquitto_pub`, and the operator asks which are at '0'), from the Python service SDK
(`IoTHubRegistryManager.query_iot_hub`), the `ironhub hub query` CLI and the Node service SDK
(`Registry.createQuery` with `nextAsTwin`); paging with continuation tokens, GROUP BY,
projections, undefined versus null, and bad queries answered 400 with IoT Hub's error code.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest
import requests
from azure.iot.hub.models import QuerySpecification, Twin
from msrest.exceptions import HttpOperationError

from conftest import ironhub_bin, require_tool
from dps_helpers import sas

IRONHUB_ADDRESS = "127.0.0.85"

NODE_DIR = Path(__file__).resolve().parent / "node"
TIMEOUT_S = 60
API = "api-version=2021-04-12"


def cli(hub, *args: str, ok: bool = True):
    """`ironhub <args> --data-dir …`: the parsed JSON output, or with `ok=False` the failed
    process."""
    proc = subprocess.run([ironhub_bin(), *args, "--data-dir", str(hub.data_dir)], capture_output=True,
                          text=True, timeout=TIMEOUT_S, stdin=subprocess.DEVNULL)
    if not ok:
        assert proc.returncode not in (0, 2), f"`{' '.join(args)}` should have failed:\n{proc.stdout}"
        return proc
    assert proc.returncode == 0, f"`{' '.join(args)}` exited {proc.returncode}:\n{proc.stdout}\n{proc.stderr}"
    return json.loads(proc.stdout)


def node(hub, *args: str) -> dict:
    """`node query.js <args>` with the owner connection string, trusting the server's CA."""
    if shutil.which("node") is None or not (NODE_DIR / "node_modules" / "azure-iothub").is_dir():
        pytest.fail("node and the Node SDKs are needed: run the suite through scripts/test", pytrace=False)
    env = {k: v for k, v in os.environ.items() if k != "DEBUG"}
    env["NODE_EXTRA_CA_CERTS"] = hub.ca_file
    env["IRONHUB_CONNECTION_STRING"] = hub.connection_string
    proc = subprocess.run(["node", "query.js", *args], cwd=NODE_DIR, env=env, capture_output=True, text=True,
                          timeout=TIMEOUT_S, stdin=subprocess.DEVNULL)
    lines = [line for line in proc.stdout.splitlines() if line.strip()]
    out = json.loads(lines[-1]) if lines else {}
    assert proc.returncode == 0 and "error" not in out, f"node query.js failed: {proc.stdout}\n{proc.stderr}"
    return out


def report_like_tasmota(hub, device_id: str, payload: str) -> None:
    """What the Tasmota guide's rule does (`publish $iothub/twin/PATCH/properties/reported/?$rid=1
    {"powerState":"%value%"}`), with mosquitto_pub at QoS 1: the hub acknowledges the PUBLISH
    once the patch is stored, so the twin has it when mosquitto_pub exits."""
    token = cli(hub, "hub", "generate-sas-token", "-d", device_id)["sas"]
    proc = subprocess.run(
        ["mosquitto_pub", "-h", hub.address, "-p", "8883", "--cafile", hub.ca_file, "-V", "mqttv311",
         "-i", device_id, "-u", f"{hub.hostname}/{device_id}/?api-version=2021-04-12", "-P", token,
         "-t", "$iothub/twin/PATCH/properties/reported/?$rid=1", "-q", "1", "-m", payload],
        capture_output=True, text=True, timeout=TIMEOUT_S)
    assert proc.returncode == 0, proc.stderr


def python_query(rm, text: str, page_size: int | None = None):
    """Every page of a query through `query_iot_hub`: (items, pages, item type)."""
    items, pages, token, kind = [], 0, None, None
    while True:
        result = rm.query_iot_hub(QuerySpecification(query=text), token, page_size)
        pages += 1
        items.extend(result.items)
        kind = result.type
        token = result.continuation_token
        if not token:
            return items, pages, kind
        assert pages < 50, "paging does not end"


def owner_auth(hub) -> dict:
    parts = hub.connection_string_parts()
    return {"Authorization": sas(hub.hostname, parts["SharedAccessKey"], parts["SharedAccessKeyName"])}


def post_query(hub, body, headers=None) -> requests.Response:
    return requests.post(f"https://{hub.address}/devices/query?{API}", data=body,
                         headers={"Content-Type": "application/json", **(owner_auth(hub) if headers is None else headers)},
                         verify=hub.ca_file, timeout=TIMEOUT_S)


@pytest.fixture(scope="module")
def outlets(hub):
    """Six outlets: three report '0', two '1', one the number 0; one more never reported."""
    require_tool("mosquitto_pub")
    rm = hub.registry_manager()
    states = {"tas-01": '"0"', "tas-02": '"1"', "tas-03": '"0"', "tas-04": "0", "tas-05": '"1"', "tas-06": '"0"'}
    for device_id, state in states.items():
        rm.create_device_with_sas(device_id, None, None, "enabled")
        report_like_tasmota(hub, device_id, f'{{"powerState":{state}}}')
    rm.create_device_with_sas("tas-07", None, None, "enabled")
    return states


def test_tasmota_outlets_at_string_zero(hub, rm, outlets):
    text = "SELECT * FROM devices WHERE properties.reported.powerState = '0'"
    items, _, kind = python_query(rm, text)
    assert kind == "twin"
    assert sorted(t.device_id for t in items) == ["tas-01", "tas-03", "tas-06"]
    # The SDK reads each item as a Twin, with the reported properties the device sent.
    assert all(isinstance(t, Twin) and t.properties.reported["powerState"] == "0" for t in items)
    assert [t["deviceId"] for t in cli(hub, "hub", "query", "-q", text)] == ["tas-01", "tas-03", "tas-06"]
    # The number 0 is not the string '0'.
    numeric = cli(hub, "hub", "query", "-q", "SELECT * FROM devices WHERE properties.reported.powerState = 0")
    assert [t["deviceId"] for t in numeric] == ["tas-04"]


def test_aggregates_with_an_equality_where(hub, rm, outlets):
    """COUNT, MIN and GROUP BY under a WHERE equality on a reported property (the store reads
    one index led by the property's JSON text): the string '0' and the number 0 stay apart."""
    queries = {
        "SELECT COUNT() AS n FROM devices WHERE properties.reported.powerState = '0'": [{"n": 3}],
        "SELECT COUNT() AS n FROM devices WHERE properties.reported.powerState = 0": [{"n": 1}],
        ("SELECT MIN(deviceId) AS first, COUNT() AS n FROM devices "
         "WHERE properties.reported.powerState = '1'"): [{"first": "tas-02", "n": 2}],
        ("SELECT properties.reported.powerState AS s, COUNT() AS n FROM devices "
         "WHERE properties.reported.powerState = '0' AND deviceId > 'tas-01' "
         "GROUP BY properties.reported.powerState"): [{"s": "0", "n": 2}],
    }
    for _ in range(2):  # the first query of a shape builds its index, the second reads it
        for text, expected in queries.items():
            r = post_query(hub, json.dumps({"query": text}))
            assert r.status_code == 200 and r.headers["x-ms-item-type"] == "raw", r.text
            assert r.json() == expected, text
    # The Python service SDK reads the same answer.
    text = next(iter(queries))
    items, _, kind = python_query(rm, text)
    assert kind == "raw" and len(items) == 1


def test_aggregates_with_numbers_ranges_and_lists(hub, rm):
    """COUNT, AVG, MIN and GROUP BY under a WHERE that compares numbers (1 equals 1.0), uses
    ranges, or IN with several values of mixed types (the store reads one index of each
    property's type rank and value): the string '1' and `true` never equal the number 1, and
    a range on numbers never matches a string."""
    racks = {"rng-1": {"rack": 1, "t": 12}, "rng-2": {"rack": 1.0, "t": 20.5},
             "rng-3": {"rack": "1", "t": "30"}, "rng-4": {"rack": 2, "t": 8},
             "rng-5": {"rack": True, "t": 15}, "rng-6": {}}
    for device_id, tags in racks.items():
        rm.create_device_with_sas(device_id, None, None, "enabled")
        if tags:
            rm.update_twin(device_id, Twin(tags=tags), "*")
    ours = "deviceId >= 'rng-' AND deviceId < 'rnh'"
    queries = {
        f"SELECT COUNT() AS n FROM devices WHERE tags.rack = 1 AND {ours}": [{"n": 2}],
        f"SELECT COUNT() AS n FROM devices WHERE tags.rack = '1' AND {ours}": [{"n": 1}],
        f"SELECT COUNT() AS n FROM devices WHERE tags.rack >= 1 AND {ours}": [{"n": 3}],
        f"SELECT COUNT() AS n FROM devices WHERE tags.t < '4' AND {ours}": [{"n": 1}],
        f"SELECT AVG(tags.t) AS t, MIN(tags.t) AS lo FROM devices WHERE tags.t > 10 AND {ours}":
            [{"t": pytest.approx(47.5 / 3), "lo": 12}],
        (f"SELECT tags.rack AS rack, AVG(tags.t) AS t FROM devices WHERE tags.rack >= 1 AND {ours} "
         "GROUP BY tags.rack"): [{"rack": 1, "t": 12}, {"rack": 1.0, "t": 20.5}, {"rack": 2, "t": 8}],
        (f"SELECT tags.rack AS rack, COUNT() AS n FROM devices WHERE tags.rack IN [1, '1', true] "
         f"AND {ours} GROUP BY tags.rack"):
            [{"rack": 1, "n": 1}, {"rack": 1.0, "n": 1}, {"rack": "1", "n": 1}, {"rack": True, "n": 1}],
    }
    for _ in range(2):  # the first query of a shape builds its index, the second reads it
        for text, expected in queries.items():
            r = post_query(hub, json.dumps({"query": text}))
            assert r.status_code == 200 and r.headers["x-ms-item-type"] == "raw", r.text
            assert r.json() == expected, text
    grouped = list(queries)[5]
    # `1` and `1.0` are two groups, each written as it was stored.
    raw = post_query(hub, json.dumps({"query": grouped})).text.replace(" ", "")
    assert '"rack":1,' in raw and '"rack":1.0,' in raw, raw
    items, _, kind = python_query(rm, grouped)
    assert kind == "raw" and len(items) == 3
    assert cli(hub, "hub", "query", "-q", list(queries)[2]) == [{"n": 3}]


def test_paging_with_continuation_tokens(hub, rm, outlets):
    text = "SELECT * FROM devices WHERE STARTSWITH(deviceId, 'tas-')"
    items, pages, _ = python_query(rm, text, page_size=2)
    assert [t.device_id for t in items] == [f"tas-0{i}" for i in range(1, 8)]
    assert pages == 4
    top = cli(hub, "hub", "query", "-q", text, "--top", "3")
    assert [t["deviceId"] for t in top] == ["tas-01", "tas-02", "tas-03"]
    # A token is opaque, but one that is not the hub's is refused.
    r = post_query(hub, json.dumps({"query": text}), {**owner_auth(hub), "x-ms-continuation": "bogus"})
    assert r.status_code == 400 and r.headers["iothub-errorcode"] == "ArgumentInvalid"


def test_group_by_projections_and_undefined_versus_null(hub, rm, outlets):
    groups, _, kind = python_query(
        rm, "SELECT properties.reported.powerState AS state, COUNT() AS outlets FROM devices "
            "WHERE STARTSWITH(deviceId, 'tas-') GROUP BY properties.reported.powerState")
    assert kind == "raw"
    raw = post_query(hub, json.dumps({"query": "SELECT properties.reported.powerState AS state, COUNT() AS n "
                                      "FROM devices WHERE STARTSWITH(deviceId, 'tas-') "
                                      "GROUP BY properties.reported.powerState"})).json()
    key = lambda item: json.dumps(item, sort_keys=True)
    assert sorted(raw, key=key) == sorted([{"state": "0", "n": 3}, {"state": "1", "n": 2},
                                           {"state": 0, "n": 1}, {"n": 1}], key=key)
    assert len(groups) == 4
    rm.update_twin("tas-01", Twin(tags={"floor": None}), "*")  # a null in a patch removes a tag
    rm.update_twin("tas-02", Twin(tags={"floor": 2, "site": None}), "*")
    r = post_query(hub, json.dumps({"query": "SELECT deviceId, tags.floor FROM devices "
                                    "WHERE deviceId IN ['tas-01', 'tas-02']"}))
    assert r.status_code == 200 and r.headers["x-ms-item-type"] == "raw"
    # An undefined projection is left out of its item.
    assert r.json() == [{"deviceId": "tas-01"}, {"deviceId": "tas-02", "floor": 2}]
    undefined = cli(hub, "hub", "query", "-q", "SELECT deviceId FROM devices "
                    "WHERE STARTSWITH(deviceId, 'tas-') AND NOT IS_DEFINED(tags.floor)")
    assert "tas-02" not in [d["deviceId"] for d in undefined] and len(undefined) == 6
    assert cli(hub, "hub", "query", "-q", "SELECT * FROM devices WHERE tags.floor = null") == []
    counted = cli(hub, "hub", "query", "-q", "SELECT COUNT() AS n FROM devices WHERE IS_DEFINED(properties.reported.powerState)")
    assert counted == [{"n": 6}]


def test_group_by_with_sum_avg_min_max_over_the_fleet(hub, rm):
    """SUM, AVG, MIN and MAX by group without WHERE (the store answers from a covering index):
    numbers only for SUM and AVG, MAX takes a string over numbers, as the language orders them."""
    require_tool("mosquitto_pub")
    lines = {"agg-1": ("a", "20"), "agg-2": ("a", "21.5"), "agg-3": ("a", '"hot"'), "agg-4": ("b", "3")}
    for device_id, (line, temperature) in lines.items():
        rm.create_device_with_sas(device_id, None, None, "enabled")
        rm.update_twin(device_id, Twin(tags={"line": line}), "*")
        report_like_tasmota(hub, device_id, f'{{"temperature":{temperature}}}')
    text = ("SELECT tags.line AS line, AVG(properties.reported.temperature) AS avg, "
            "SUM(properties.reported.temperature) AS sum, MIN(properties.reported.temperature) AS lo, "
            "MAX(properties.reported.temperature) AS hi, COUNT() AS n FROM devices GROUP BY tags.line")
    for _ in range(2):  # the first query builds the index, the second reads it
        r = post_query(hub, json.dumps({"query": text}))
        assert r.status_code == 200 and r.headers["x-ms-item-type"] == "raw"
        by_line = {g["line"]: g for g in r.json() if "line" in g}
        assert by_line == {"a": {"line": "a", "avg": 20.75, "sum": 41.5, "lo": 20, "hi": "hot", "n": 3},
                           "b": {"line": "b", "avg": 3, "sum": 3, "lo": 3, "hi": 3, "n": 1}}
    # The Python service SDK pages the same groups (it reads each item into a `Twin` model).
    groups, _, kind = python_query(rm, text)
    assert kind == "raw" and len(groups) == len(r.json())


def test_projected_properties_come_in_select_order(hub, rm, outlets):
    """IoT Hub writes a projected item's properties in the order of the SELECT list, not sorted
    by name: read the raw body's order, and what the Node service SDK hands over (the Python
    SDK reads every item into a `Twin` model, which keeps no order)."""
    text = ("SELECT properties.reported.powerState AS state, deviceId FROM devices "
            "WHERE deviceId IN ['tas-02', 'tas-04']")
    r = post_query(hub, json.dumps({"query": text}))
    assert r.status_code == 200 and r.headers["x-ms-item-type"] == "raw"
    assert json.loads(r.text, object_pairs_hook=list) == [[("state", "1"), ("deviceId", "tas-02")],
                                                          [("state", 0), ("deviceId", "tas-04")]]
    grouped = ("SELECT properties.reported.powerState AS zstate, COUNT() AS n FROM devices "
               "WHERE STARTSWITH(deviceId, 'tas-') GROUP BY properties.reported.powerState")
    r = post_query(hub, json.dumps({"query": grouped}))
    assert r.status_code == 200
    assert {tuple(k for k, _ in item) for item in json.loads(r.text, object_pairs_hook=list)} == {("zstate", "n"), ("n",)}
    raw = node(hub, "raw", "--sql", "SELECT properties.reported.powerState AS state, deviceId FROM devices "
               "WHERE deviceId = 'tas-02'")
    assert [list(item) for item in raw["items"]] == [["state", "deviceId"]]


def test_node_create_query_pages_with_next_as_twin(hub, outlets):
    out = node(hub, "twins", "--sql", "SELECT * FROM devices WHERE STARTSWITH(deviceId, 'tas-')", "--page-size", "3")
    assert out["pageSizes"] == [3, 3, 1]
    assert set(out["itemTypes"]) == {"twin"}
    assert [i["deviceId"] for i in out["items"]] == [f"tas-0{i}" for i in range(1, 8)]
    assert all(i["isTwin"] for i in out["items"])
    assert out["items"][0]["reported"]["powerState"] == "0"
    raw = node(hub, "raw", "--sql", "SELECT deviceId, properties.reported.powerState FROM devices "
               "WHERE properties.reported.powerState = '1'")
    assert raw["items"] == [{"deviceId": "tas-02", "powerState": "1"}, {"deviceId": "tas-05", "powerState": "1"}]
    assert raw["itemTypes"] == ["raw"]


@pytest.mark.parametrize("text, column", [
    ("SELECT * FROM devices WHERE", 27),
    ("SELECT * FROM devices WHERE STARTS_WITH(deviceId, 'a')", 28),
    ("SELECT * FROM devices WHERE powerState = 'open", 41),
    ("SELECT * FROM twins", 14),
])
def test_bad_queries_are_400_with_the_position(hub, rm, text, column):
    r = post_query(hub, json.dumps({"query": text}))
    assert r.status_code == 400 and r.headers["iothub-errorcode"] == "BadRequest", r.text
    assert f"Line 1:{column}" in r.json()["Message"]
    with pytest.raises(HttpOperationError) as e:
        rm.query_iot_hub(QuerySpecification(query=text))
    assert e.value.response.status_code == 400
    out = node(hub, "bad", "--sql", text)
    assert out["statusCode"] == 400 and "Line 1:" in out["responseBody"]
    proc = cli(hub, "hub", "query", "-q", text, ok=False)
    assert f"Line 1:{column}" in proc.stderr


def test_requests_that_are_not_queries(hub):
    assert post_query(hub, "").status_code == 400
    assert post_query(hub, "{not json").status_code == 400
    assert post_query(hub, json.dumps({"query": ""})).status_code == 400
    assert post_query(hub, json.dumps({"query": "SELECT * FROM devices"}),
                      {**owner_auth(hub), "x-ms-max-item-count": "many"}).status_code == 400
    assert post_query(hub, json.dumps({"query": "SELECT * FROM devices"}), {}).status_code == 401
