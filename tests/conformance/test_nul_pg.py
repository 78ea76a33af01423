"""The NUL character (`\\u0000`) in JSON on the PostgreSQL store, whose `jsonb` and `text` cannot
hold it: a device's status reason, a configuration's content, a DPS enrollment's initial twin and
a job's method payload are refused with 400 (IoT Hub's `ArgumentInvalid`, DPS's `BadRequest`) and
nothing is written, through the real service SDKs and the REST API; one node over a database and
a nats-server of this module's own. A module's `managedBy`, a device's X.509 thumbprint, the
routing document (a route's condition, an enrichment's value), network rules (an IP filter
rule's name) and a CA certificate whose subject holds NUL are refused alike, with the same answer
from the embedded engine (the module's `hub`)."""

from __future__ import annotations

import datetime
import os
import time

import pytest
import requests
from azure.core.exceptions import HttpResponseError
from azure.iot.deviceprovisioning import DeviceProvisioningClient
from azure.iot.hub import IoTHubConfigurationManager
from azure.iot.hub.models import Configuration, ConfigurationContent
from msrest.exceptions import HttpOperationError

from cluster_helpers import cluster, fresh_database, postgres_admin_url
from conftest import assert_hub_error, test_address
from dps_helpers import dps_info, dps_rest, new_key, sas
from services import nats_server

IRONHUB_ADDRESS = "127.0.0.102"
ADDRESS = test_address("127.0.0.19")
NATS_ADDRESS = test_address("127.0.0.19")  # its own (test_migrate_data.py has .18), port 4222 beside the hub
NATS_PORT = 4223
API = {"api-version": "2021-04-12"}


@pytest.fixture(scope="module")
def pg_hub():
    with fresh_database(postgres_admin_url(), f"ironhub_nul_{os.getpid()}") as store:
        with nats_server(NATS_ADDRESS, NATS_PORT) as nats_url:
            with cluster(store, nats_url, [ADDRESS], prefix="ironhub-nul-pg-") as nodes:
                yield nodes[0]


def rest(hub, method: str, path: str, body=None):
    parts = hub.connection_string_parts()
    token = sas(hub.hostname, parts["SharedAccessKey"], parts["SharedAccessKeyName"])
    return requests.request(method, f"https://{hub.address}{path}", params=API, json=body,
                            headers={"Authorization": token}, timeout=30, verify=hub.ca_file)


def test_a_device_status_reason_with_nul_is_refused(pg_hub):
    r = rest(pg_hub, "PUT", "/devices/nul-dev", {"deviceId": "nul-dev", "statusReason": "a\u0000b"})
    assert r.status_code == 400, r.text
    assert r.headers.get("iothub-errorcode") == "ArgumentInvalid", r.text
    assert rest(pg_hub, "GET", "/devices/nul-dev").status_code == 404


def test_a_configuration_with_nul_is_refused(pg_hub):
    cm = IoTHubConfigurationManager.from_connection_string(pg_hub.connection_string)
    cm.protocol.config.connection.verify = pg_hub.ca_file
    config = Configuration(
        id="nul-config", priority=1, target_condition="*",
        content=ConfigurationContent(device_content={"properties.desired.x": {"s": "a\u0000"}}))
    with pytest.raises(HttpOperationError) as e:
        cm.create_configuration(config)
    assert_hub_error(e, 400, "ArgumentInvalid")
    assert cm.get_configurations(10) == []


def test_a_job_payload_with_nul_is_refused(pg_hub):
    start = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    r = rest(pg_hub, "PUT", "/jobs/v2/nul-job", {
        "jobId": "nul-job", "type": "scheduleDeviceMethod", "queryCondition": "deviceId = 'nobody'", "startTime": start,
        "maxExecutionTimeInSeconds": 60,
        "cloudToDeviceMethod": {"methodName": "m", "payload": {"s": "\u0000"},
                                "responseTimeoutInSeconds": 5}})
    assert r.status_code == 400, r.text
    assert r.headers.get("iothub-errorcode") == "ArgumentInvalid", r.text
    assert rest(pg_hub, "GET", "/jobs/v2/nul-job").status_code == 404


def test_an_enrollment_initial_twin_with_nul_is_refused(pg_hub):
    dps = DeviceProvisioningClient.from_connection_string(
        dps_info(pg_hub)["serviceConnectionString"], connection_verify=pg_hub.ca_file)
    with pytest.raises(HttpResponseError) as e:
        dps.enrollment.create_or_update(id="nul-enrollment", enrollment={
            "registrationId": "nul-enrollment",
            "attestation": {"type": "symmetricKey",
                            "symmetricKey": {"primaryKey": new_key(), "secondaryKey": new_key()}},
            "initialTwin": {"tags": {"site": "a\u0000b"}},
        })
    assert e.value.status_code == 400, e.value
    with pytest.raises(HttpResponseError) as e:
        dps.enrollment.get(id="nul-enrollment")
    assert e.value.status_code == 404


# -- every engine gives the same answer ----------------------------------------------------------

@pytest.fixture(params=["postgres", "embedded"])
def any_hub(request):
    """The PostgreSQL node, then the embedded hub of this module."""
    return request.getfixturevalue("pg_hub" if request.param == "postgres" else "hub")


def assert_argument_invalid(r: requests.Response):
    assert r.status_code == 400, r.text
    assert r.headers.get("iothub-errorcode") == "ArgumentInvalid", r.text
    assert "NUL" in r.text, r.text


def test_a_module_managed_by_with_nul_is_refused(any_hub):
    rm = any_hub.registry_manager()
    rm.create_device_with_sas("nul-parent", None, None, "enabled")
    try:
        with pytest.raises(HttpOperationError) as e:
            rm.create_module_with_sas("nul-parent", "m1", "a\u0000b", None, None)
        assert_hub_error(e, 400, "ArgumentInvalid")
        assert rm.get_modules("nul-parent") == []
    finally:
        rm.delete_device("nul-parent")


def test_a_device_thumbprint_with_nul_is_refused(any_hub):
    rm = any_hub.registry_manager()
    with pytest.raises(HttpOperationError) as e:
        rm.create_device_with_x509("nul-x509", "AB\u0000CD", "", "enabled")
    assert e.value.response.status_code == 400, e.value.response.text
    assert rest(any_hub, "GET", "/devices/nul-x509").status_code == 404


def test_a_routing_document_with_nul_is_refused(any_hub):
    before = rest(any_hub, "GET", "/routing")
    assert before.status_code == 200, before.text
    etag = {"If-Match": before.headers["ETag"]} if before.headers.get("ETag") else {}
    for change in (
        {"routes": [{"name": "nul-route", "source": "DeviceMessages", "condition": "level = 'a\u0000'",
                     "endpointNames": ["events"], "isEnabled": True}]},
        {"enrichments": [{"key": "site", "value": "a\u0000b", "endpointNames": ["events"]}]},
    ):
        doc = {**before.json(), **change}
        parts = any_hub.connection_string_parts()
        token = sas(any_hub.hostname, parts["SharedAccessKey"], parts["SharedAccessKeyName"])
        r = requests.put(f"https://{any_hub.address}/routing", params=API, json=doc, timeout=30,
                         headers={"Authorization": token, **etag}, verify=any_hub.ca_file)
        assert_argument_invalid(r)
    after = rest(any_hub, "GET", "/routing")
    assert after.json() == before.json()
    assert after.headers.get("ETag") == before.headers.get("ETag")


def test_network_rules_with_nul_are_refused(any_hub):
    before = rest(any_hub, "GET", "/networkRules")
    rules = {"ipFilterRules": [{"filterName": "a\u0000b", "action": "Reject", "ipMask": "10.1.2.3"}]}
    assert_argument_invalid(rest(any_hub, "PUT", "/networkRules", rules))
    after = rest(any_hub, "GET", "/networkRules")
    assert after.json() == before.json()
    # DPS's rules go through the same check and answer in DPS's shape.
    r = dps_rest(any_hub, "PUT", "/dps/networkRules", rules)
    assert r.status_code == 400, r.text
    assert "NUL" in r.text, r.text


def nul_subject_ca() -> str:
    """A self-signed CA certificate whose subject CN holds the NUL character."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "nul\u0000ca")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now)
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    return cert.public_bytes(serialization.Encoding.PEM).decode()


def test_a_certificate_whose_subject_holds_nul_is_refused(any_hub):
    r = rest(any_hub, "PUT", "/certificates/nul-ca", {"properties": {"certificate": nul_subject_ca()}})
    assert r.status_code == 400, r.text
    assert rest(any_hub, "GET", "/certificates/nul-ca").status_code == 404
    r = dps_rest(any_hub, "PUT", "/dps/certificates/nul-ca", {"properties": {"certificate": nul_subject_ca()}})
    assert r.status_code == 400, r.text
    assert dps_rest(any_hub, "GET", "/dps/certificates/nul-ca").status_code == 404
