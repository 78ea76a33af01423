"""IP filters, public network access and the TLS policy against real clients.

The hub and the DPS instance each have their network rules (`GET/PUT /networkRules`,
`/dps/networkRules`, ARM's property names). Clients here choose their source address inside
the test network (the Python device SDKs through paho's socket, bound with a patched
`socket.create_connection`): TESTNET.211 is filtered, TESTNET.212 is not, and the default
source (127.0.0.1, this host's loopback) is what `publicNetworkAccess: Disabled` still lets
in. A second server checks the TLS policy with `openssl s_client`."""

from __future__ import annotations

import contextlib
import http.client
import json
import socket
import ssl
import subprocess
import threading

import pytest
from azure.iot.device import IoTHubDeviceClient, Message, ProvisioningDeviceClient

from conftest import IronHub, require_tool, run_cli, test_address
from dps_helpers import dps_info, dps_rest, new_key, sas, stored_events, wait_for

IRONHUB_ADDRESS = test_address("127.0.0.210")
FILTERED = test_address("127.0.0.211")
ALLOWED = test_address("127.0.0.212")
# The test clients' neighbourhood (.208-.215): not the host's own 127.0.0.1, from which the
# tests write the rules, whatever IRONHUB_TEST_NET is.
NEIGHBOURS = ".".join(FILTERED.split(".")[:3]) + ".208/29"
TLS13_ADDRESS = test_address("127.0.0.213")
WAIT_S = 20.0


# -- helpers ---------------------------------------------------------------------------------

def hub_auth(hub) -> dict:
    parts = hub.connection_string_parts()
    return {"Authorization": sas(hub.hostname, parts["SharedAccessKey"], parts["SharedAccessKeyName"])}


def rest(hub, method: str, path: str, body=None, headers=None, source: str | None = None):
    """A hub service REST call (iothubowner) from `source` (default: the host's loopback).
    Returns (status, headers, parsed body or text)."""
    ctx = ssl.create_default_context(cafile=hub.ca_file)
    conn = http.client.HTTPSConnection(hub.address, 443, context=ctx, timeout=30,
                                       source_address=(source, 0) if source else None)
    try:
        data = json.dumps(body).encode() if body is not None else None
        h = {**hub_auth(hub), "Content-Type": "application/json", **(headers or {})}
        conn.request(method, f"{path}?api-version=2021-04-12", body=data, headers=h)
        r = conn.getresponse()
        text = r.read().decode()
        try:
            parsed = json.loads(text) if text else None
        except json.JSONDecodeError:
            parsed = text
        return r.status, dict(r.getheaders()), parsed
    finally:
        conn.close()


def put_rules(hub, rules: dict, dps: bool = False) -> str:
    """Writes the rules (hub or DPS) from the host's loopback; returns the new etag."""
    if dps:
        r = dps_rest(hub, "PUT", "/dps/networkRules", rules)
        assert r.status_code == 200, r.text
        return r.headers["etag"]
    status, headers, body = rest(hub, "PUT", "/networkRules", rules)
    assert status == 200, body
    return {k.lower(): v for k, v in headers.items()}["etag"]


def reject(*names_masks) -> dict:
    return {"ipFilterRules": [{"filterName": n, "action": a, "ipMask": m} for n, a, m in names_masks]}


@contextlib.contextmanager
def source(address: str):
    """Every socket the SDKs open (paho calls `socket.create_connection`) leaves from `address`."""
    real = socket.create_connection

    def bound(addr, timeout=socket._GLOBAL_DEFAULT_TIMEOUT, source_address=None, **kw):
        if not source_address or not source_address[0]:
            source_address = (address, 0)
        return real(addr, timeout, source_address, **kw)

    socket.create_connection = bound
    try:
        yield
    finally:
        socket.create_connection = real


def ca_pem(hub) -> str:
    with open(hub.ca_file) as f:
        return f.read()


def device_client(hub, rm, device_id: str) -> IoTHubDeviceClient:
    try:
        d = rm.get_device(device_id)
    except Exception:
        d = rm.create_device_with_sas(device_id, None, None, "enabled")
    key = d.authentication.symmetric_key.primary_key
    return IoTHubDeviceClient.create_from_symmetric_key(
        symmetric_key=key, hostname=hub.hostname, device_id=device_id,
        server_verification_cert=ca_pem(hub), connection_retry=False)


def connects(hub, rm, device_id: str, address: str) -> bool:
    """Whether a device SDK client leaving from `address` connects and sends a message."""
    client = device_client(hub, rm, device_id)
    with source(address):
        try:
            client.connect()
            client.send_message(Message(f"hello from {address}"))
            return True
        except Exception:
            return False
        finally:
            client.shutdown()


def provisions(hub, registration_id: str, key: str, address: str) -> bool:
    client = ProvisioningDeviceClient.create_from_symmetric_key(
        provisioning_host=hub.address, registration_id=registration_id,
        id_scope=dps_info(hub)["idScope"], symmetric_key=key,
        server_verification_cert=ca_pem(hub))
    with source(address):
        try:
            return client.register().status == "assigned"
        except Exception:
            return False
        finally:
            with contextlib.suppress(Exception):
                client.shutdown()


@pytest.fixture(autouse=True)
def open_rules(hub):
    """Each test starts, and leaves, with no rules."""
    put_rules(hub, {})
    put_rules(hub, {}, dps=True)
    yield
    put_rules(hub, {})
    put_rules(hub, {}, dps=True)


# -- IP filters ------------------------------------------------------------------------------

def test_a_filtered_address_is_refused_while_another_provisions_and_connects(hub, rm):
    rid = "np-provisioned"
    key = new_key()
    r = dps_rest(hub, "PUT", f"/enrollments/{rid}", {
        "registrationId": rid,
        "attestation": {"type": "symmetricKey", "symmetricKey": {"primaryKey": key, "secondaryKey": new_key()}},
    })
    assert r.status_code == 200, r.text

    put_rules(hub, reject(("filtered", "Reject", FILTERED)), dps=True)
    put_rules(hub, reject(("filtered", "Reject", FILTERED)))
    assert not provisions(hub, rid, key, FILTERED)
    assert provisions(hub, rid, key, ALLOWED)

    # The provisioned device connects from the allowed address only.
    assert connects(hub, rm, rid, ALLOWED)
    wait_for(lambda: f"hello from {ALLOWED}" in [e["body"] for e in stored_events(hub, rid)],
             what="the allowed device's telemetry")
    assert not connects(hub, rm, rid, FILTERED)

    # Service REST: with only the hub's rules refusing it, the filtered address still reaches
    # the HTTPS port (DPS lets it in) and its hub requests are answered 401 without naming
    # the rule, as IoT Hub answers them.
    put_rules(hub, {}, dps=True)
    status, _, body = rest(hub, "GET", "/devices", source=FILTERED)
    assert status == 401, body
    assert body["errorCode"] == 401002, body
    assert body["Message"].startswith("ErrorCode:IotHubUnauthorizedAccess;"), body
    assert "filter" not in json.dumps(body).lower()
    status, _, _ = rest(hub, "GET", "/devices", source=ALLOWED)
    assert status == 200
    # DPS's service API answers the filtered address (its own rules are empty).
    status, _, body = rest(hub, "GET", "/dps/networkRules", source=FILTERED,
                           headers={"Authorization": sas(hub.hostname, dps_key(hub), "provisioningserviceowner")})
    assert status == 200, body

    # Both scopes refusing it: the HTTPS port closes the connection before the TLS handshake.
    put_rules(hub, reject(("filtered", "Reject", FILTERED)), dps=True)
    with pytest.raises((ConnectionError, ssl.SSLError, OSError)):
        rest(hub, "GET", "/devices", source=FILTERED)


def dps_key(hub) -> str:
    from dps_helpers import dps_service_key
    return dps_service_key(hub)


def test_reordered_rules_change_the_outcome(hub, rm):
    net = NEIGHBOURS
    put_rules(hub, reject(("one", "Accept", FILTERED), ("rest", "Reject", net)))
    assert connects(hub, rm, "np-order", FILTERED)
    assert not connects(hub, rm, "np-order", ALLOWED)
    # The same two rules the other way round: the reject-all comes first and wins.
    put_rules(hub, reject(("rest", "Reject", net), ("one", "Accept", FILTERED)))
    assert not connects(hub, rm, "np-order", FILTERED)
    assert not connects(hub, rm, "np-order", ALLOWED)
    # Rules that match nobody: everyone is let in (no match accepts).
    put_rules(hub, reject(("elsewhere", "Reject", "10.0.0.0/8")))
    assert connects(hub, rm, "np-order", ALLOWED)


def test_a_new_rule_closes_an_open_mqtt_connection(hub, rm):
    client = device_client(hub, rm, "np-open")
    dropped = threading.Event()
    client.on_connection_state_change = lambda: None if client.connected else dropped.set()
    with source(ALLOWED):
        client.connect()
        try:
            client.send_message(Message("before the rule"))
            put_rules(hub, reject(("now-refused", "Reject", ALLOWED)))
            assert dropped.wait(WAIT_S), "the connection was not closed by the new rule"
        finally:
            client.shutdown()
    assert not connects(hub, rm, "np-open", ALLOWED)
    # A rule for another address leaves a connection open.
    put_rules(hub, {})
    client = device_client(hub, rm, "np-open")
    still = threading.Event()
    client.on_connection_state_change = lambda: None if client.connected else still.set()
    with source(ALLOWED):
        client.connect()
        try:
            put_rules(hub, reject(("someone-else", "Reject", FILTERED)))
            client.send_message(Message("after an unrelated rule"))
            assert not still.is_set()
        finally:
            client.shutdown()


def test_public_network_access_disabled_leaves_only_the_loopback(hub, rm):
    put_rules(hub, {"publicNetworkAccess": "Disabled"})
    status, _, body = rest(hub, "GET", "/networkRules")
    assert status == 200 and body["publicNetworkAccess"] == "Disabled", body
    assert not connects(hub, rm, "np-private", ALLOWED)
    status, _, _ = rest(hub, "GET", "/devices", source=ALLOWED)
    assert status == 401
    # This host's loopback address (the default source) is still let in.
    client = device_client(hub, rm, "np-private")
    try:
        client.connect()
        client.send_message(Message("from the loopback"))
    finally:
        client.shutdown()


# -- bad rules -------------------------------------------------------------------------------

@pytest.mark.parametrize("rules, says", [
    (reject(("a", "Reject", "10.0.0.0/33")), "ipMask"),
    (reject(("a", "Reject", "not-an-ip")), "ipMask"),
    (reject(("same", "Reject", "10.0.0.1"), ("SAME", "Accept", "10.0.0.2")), "more than once"),
    (reject(*[(f"r{i}", "Reject", "10.0.0.1") for i in range(101)]), "at most 100"),
    ({"networkRuleSets": {"defaultAction": "Deny", "applyToBuiltInEventHubEndpoint": True,
                          "ipRules": [{"filterName": "x", "action": "Allow", "ipMask": "::/200"}]}}, "ipMask"),
], ids=["prefix", "address", "duplicate-names", "101-rules", "rule-sets"])
def test_bad_rules_are_400_and_change_nothing(hub, rules, says):
    etag = put_rules(hub, reject(("keep", "Reject", "10.9.9.9")))
    status, _, body = rest(hub, "PUT", "/networkRules", rules)
    assert status == 400, body
    assert "ArgumentInvalid" in json.dumps(body), body
    assert says in json.dumps(body), body
    status, headers, body = rest(hub, "GET", "/networkRules")
    assert {k.lower(): v for k, v in headers.items()}["etag"] == etag
    assert body["ipFilterRules"] == [{"filterName": "keep", "action": "Reject", "ipMask": "10.9.9.9"}]
    # DPS answers in its own error shape.
    r = dps_rest(hub, "PUT", "/dps/networkRules", rules)
    assert r.status_code == 400, r.text
    assert r.json()["errorCode"] == 400004, r.text


def test_a_stale_if_match_is_412(hub):
    etag = put_rules(hub, reject(("one", "Reject", "10.0.0.1")))
    put_rules(hub, reject(("two", "Reject", "10.0.0.2")))
    status, _, body = rest(hub, "PUT", "/networkRules", {}, headers={"If-Match": etag})
    assert status == 412, body


# -- TLS policy ------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def tls13_hub(tmp_path_factory):
    """A second server: TLS 1.3 only, one cipher suite, device and service host names."""
    server = IronHub(TLS13_ADDRESS, tmp_path_factory.mktemp("tls13"), [
        "--min-tls-version", "1.3",
        "--tls-cipher-suites", "TLS_AES_256_GCM_SHA384",
        "--device-hostname", "np.device.example.net",
        "--service-hostname", "np.service.example.net",
    ])
    server.start()
    try:
        yield server
    finally:
        server.stop()


def s_client(address: str, ca: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["openssl", "s_client", "-connect", f"{address}:8883", "-CAfile", ca, *args],
        input="", capture_output=True, text=True, timeout=30)


def test_tls12_is_refused_when_13_is_the_minimum(hub, tls13_hub):
    require_tool("openssl")
    refused = s_client(tls13_hub.address, tls13_hub.ca_file, "-tls1_2")
    assert refused.returncode != 0, refused.stdout
    accepted = s_client(tls13_hub.address, tls13_hub.ca_file, "-tls1_3")
    assert accepted.returncode == 0, accepted.stderr
    assert "TLSv1.3" in accepted.stdout
    assert "Verify return code: 0" in accepted.stdout
    # The default policy still speaks TLS 1.2.
    default = s_client(hub.address, hub.ca_file, "-tls1_2")
    assert default.returncode == 0, default.stderr
    assert "TLSv1.2" in default.stdout


def test_only_the_allowed_cipher_suites_are_negotiated(tls13_hub):
    require_tool("openssl")
    refused = s_client(tls13_hub.address, tls13_hub.ca_file, "-tls1_3", "-ciphersuites", "TLS_AES_128_GCM_SHA256")
    assert refused.returncode != 0, refused.stdout
    accepted = s_client(tls13_hub.address, tls13_hub.ca_file, "-tls1_3", "-ciphersuites",
                        "TLS_AES_128_GCM_SHA256:TLS_AES_256_GCM_SHA384")
    assert accepted.returncode == 0, accepted.stderr
    assert "TLS_AES_256_GCM_SHA384" in accepted.stdout


def test_the_certificate_names_the_device_and_service_endpoints(tls13_hub):
    require_tool("openssl")
    shown = s_client(tls13_hub.address, tls13_hub.ca_file, "-showcerts")
    leaf = shown.stdout.split("-----BEGIN CERTIFICATE-----")[1].split("-----END CERTIFICATE-----")[0]
    text = subprocess.run(["openssl", "x509", "-noout", "-ext", "subjectAltName"],
                          input=f"-----BEGIN CERTIFICATE-----{leaf}-----END CERTIFICATE-----\n",
                          capture_output=True, text=True, check=True).stdout
    assert "DNS:np.device.example.net" in text, text
    assert "DNS:np.service.example.net" in text, text
    assert f"IP Address:{TLS13_ADDRESS}" in text, text
    # A client verifying the device host name accepts the certificate.
    named = s_client(tls13_hub.address, tls13_hub.ca_file, "-verify_hostname", "np.device.example.net",
                     "-verify_return_error")
    assert named.returncode == 0, named.stdout + named.stderr


# -- the CLI ---------------------------------------------------------------------------------

def cli(hub, *args: str, ok: bool = True):
    proc = run_cli(*args, "--data-dir", str(hub.data_dir))
    if not ok:
        assert proc.returncode not in (0, 2), proc.stdout
        return proc
    assert proc.returncode == 0, f"{args}: {proc.stdout}\n{proc.stderr}"
    return json.loads(proc.stdout)


def test_the_cli_edits_hub_and_dps_rules_in_order(hub, rm):
    cli(hub, "hub", "network-rule", "add", "--name", "rest", "--action", "Reject", "--ip-mask", NEIGHBOURS)
    shown = cli(hub, "hub", "network-rule", "add", "--name", "one", "--action", "Accept",
                "--ip-mask", ALLOWED, "--position", "0")
    assert [r["filterName"] for r in shown["ipFilterRules"]] == ["one", "rest"]
    assert connects(hub, rm, "np-cli", ALLOWED)
    moved = cli(hub, "hub", "network-rule", "move", "--name", "rest", "--position", "0")
    assert [r["filterName"] for r in moved["ipFilterRules"]] == ["rest", "one"]
    assert not connects(hub, rm, "np-cli", ALLOWED)
    # A bad mask: the server's 400 is the CLI's error, and nothing changed.
    bad = cli(hub, "hub", "network-rule", "add", "--name", "x", "--action", "Reject", "--ip-mask", "1.2.3/8", ok=False)
    assert "ipMask" in bad.stderr, bad.stderr
    assert cli(hub, "hub", "network-rule", "show") == moved
    cli(hub, "hub", "network-rule", "remove", "--name", "rest")
    assert connects(hub, rm, "np-cli", ALLOWED)
    off = cli(hub, "hub", "network-rule", "public-network-access", "--value", "Disabled")
    assert off["publicNetworkAccess"] == "Disabled"
    assert not connects(hub, rm, "np-cli", ALLOWED)

    dps = cli(hub, "dps", "network-rule", "add", "--name", "devices", "--action", "Reject",
              "--ip-mask", FILTERED, "--target", "deviceApi")
    assert dps["ipFilterRules"] == [{"filterName": "devices", "action": "Reject", "ipMask": FILTERED,
                                     "target": "deviceApi"}]
    # The DPS instance's rules are its own.
    assert cli(hub, "hub", "network-rule", "show")["publicNetworkAccess"] == "Disabled"
    assert "publicNetworkAccess" in cli(hub, "dps", "network-rule", "show")


def test_network_rule_sets_and_the_built_in_event_hub_endpoint(hub, rm):
    from azure.eventhub import EventHubConsumerClient

    def reads_events(address: str) -> bool:
        client = EventHubConsumerClient.from_connection_string(
            hub.info["eventHubCompatible"]["connectionString"], consumer_group="$Default",
            connection_verify=hub.ca_file, retry_total=0)
        with source(address):
            try:
                return bool(client.get_eventhub_properties()["partition_ids"])
            except Exception:
                return False
            finally:
                client.close()

    rule_sets = lambda apply: {"networkRuleSets": {  # noqa: E731
        "defaultAction": "Deny", "applyToBuiltInEventHubEndpoint": apply,
        "ipRules": [{"filterName": "allowed", "action": "Allow", "ipMask": ALLOWED},
                    # This host's loopback, where the test's service calls come from.
                    {"filterName": "host", "action": "Allow", "ipMask": "127.0.0.1"}]}}
    put_rules(hub, rule_sets(False))
    assert connects(hub, rm, "np-rulesets", ALLOWED)
    assert not connects(hub, rm, "np-rulesets", FILTERED)
    # Not applied to the Event Hubs-compatible endpoint: it still reads from there.
    assert reads_events(FILTERED)
    put_rules(hub, rule_sets(True))
    assert not reads_events(FILTERED)
    assert reads_events(ALLOWED)
