"""The DPS service API against both Python service SDKs: `azure-iot-deviceprovisioning`
(api-version 2021-10-01, azure-core) and the older `azure-iothub-provisioningserviceclient`
(2018-09-01-preview, msrest): create or update with ETags, conflicts, reads without keys,
queries page by page, bulk operations, attestation mechanisms, registration states."""

from __future__ import annotations

import pytest
from azure.core.exceptions import HttpResponseError, ResourceExistsError, ResourceNotFoundError
from azure.iot.deviceprovisioning import DeviceProvisioningClient

from dps_helpers import dps_info, dps_rest, new_key

IRONHUB_ADDRESS = "127.0.0.16"


@pytest.fixture(scope="module")
def dps(hub):
    return DeviceProvisioningClient.from_connection_string(
        dps_info(hub)["serviceConnectionString"], connection_verify=hub.ca_file
    )


def sym(primary=None, secondary=None) -> dict:
    keys = {k: v for k, v in (("primaryKey", primary), ("secondaryKey", secondary)) if v}
    return {"type": "symmetricKey", "symmetricKey": keys}


def test_enrollments_with_etags_conflicts_and_reads(dps):
    created = dps.enrollment.create_or_update(
        id="Svc-Dev-1",
        enrollment={"registrationId": "Svc-Dev-1", "deviceId": "svc-device-1", "attestation": sym(),
                    "capabilities": {"iotEdge": True}, "allocationPolicy": "hashed",
                    "reprovisionPolicy": {"updateHubAssignment": True, "migrateDeviceData": False},
                    "optionalDeviceInformation": {"model": "x1"}},
    )
    assert created["registrationId"] == "Svc-Dev-1"
    assert created["createdDateTimeUtc"].endswith("Z") and created["lastUpdatedDateTimeUtc"]
    assert len(created["attestation"]["symmetricKey"]["primaryKey"]) == 88, "generated, 64 bytes"
    etag = created["etag"]

    # Creating it again (no If-Match) is a conflict; ids are case-insensitive.
    with pytest.raises(ResourceExistsError):
        dps.enrollment.create_or_update(id="svc-dev-1", enrollment={"registrationId": "svc-dev-1", "attestation": sym()})
    # A stale etag is refused (412); the right one updates, keeping the keys.
    with pytest.raises(HttpResponseError) as stale:
        dps.enrollment.create_or_update(id="Svc-Dev-1", enrollment={"registrationId": "Svc-Dev-1", "attestation": sym()},
                                        if_match='"stale"')
    assert stale.value.status_code == 412
    shown = dps.enrollment.get(id="svc-dev-1")
    assert shown["registrationId"] == "Svc-Dev-1", "the id keeps the case it was created with"
    assert shown["deviceId"] == "svc-device-1"
    assert shown["capabilities"] == {"iotEdge": True}
    assert shown["optionalDeviceInformation"] == {"model": "x1"}
    assert shown["attestation"]["symmetricKey"] == {}, "reads carry no keys"
    shown["provisioningStatus"] = "disabled"
    # The client may send back what it read (with its etag): an update.
    updated = dps.enrollment.create_or_update(id="Svc-Dev-1", enrollment=shown, if_match=etag)
    assert updated["provisioningStatus"] == "disabled"
    assert updated["etag"] != etag
    assert updated["attestation"]["symmetricKey"]["primaryKey"] == created["attestation"]["symmetricKey"]["primaryKey"]

    # Bad input changes nothing.
    for bad in [
        {"registrationId": "bad id!", "attestation": sym()},
        {"registrationId": "short-key", "attestation": sym(primary="c2hvcnQ=")},
        {"registrationId": "no-attestation"},
    ]:
        with pytest.raises(HttpResponseError) as refused:
            dps.enrollment.create_or_update(id=bad["registrationId"], enrollment=bad)
        assert refused.value.status_code == 400
    with pytest.raises(ResourceNotFoundError):
        dps.enrollment.get(id="short-key")

    dps.enrollment.delete(id="Svc-Dev-1", if_match=updated["etag"])
    with pytest.raises(ResourceNotFoundError):
        dps.enrollment.get(id="Svc-Dev-1")


def test_queries_page_by_page_and_bulk_operations(dps):
    result = dps.enrollment.run_bulk_operation(bulk_operation={
        "mode": "create",
        "enrollments": [{"registrationId": f"bulk-{i}", "attestation": sym()} for i in range(5)],
    })
    assert result["isSuccessful"] is True and result["errors"] == []
    # A batch with one bad entry writes nothing and says which one.
    result = dps.enrollment.run_bulk_operation(bulk_operation={
        "mode": "create",
        "enrollments": [{"registrationId": "bulk-new", "attestation": sym()},
                        {"registrationId": "bulk-0", "attestation": sym()}],
    })
    assert result["isSuccessful"] is False
    assert [e["registrationId"] for e in result["errors"]] == ["bulk-0"]
    assert result["errors"][0]["errorCode"] == 409001
    with pytest.raises(ResourceNotFoundError):
        dps.enrollment.get(id="bulk-new")

    pages = dps.enrollment.query(query_specification={"query": "SELECT *"}, top=2).by_page()
    seen = [[e["registrationId"] for e in page] for page in pages]
    assert all(len(p) <= 2 for p in seen)
    assert [r for p in seen for r in p if r.startswith("bulk-")] == [f"bulk-{i}" for i in range(5)]

    result = dps.enrollment.run_bulk_operation(bulk_operation={
        "mode": "delete", "enrollments": [{"registrationId": f"bulk-{i}"} for i in range(5)]})
    assert result["isSuccessful"] is True
    assert not [e for e in dps.enrollment.query(query_specification={"query": "*"}) if e["registrationId"].startswith("bulk-")]

    groups = dps.enrollment_group.run_bulk_operation(bulk_operation={
        "mode": "create",
        "enrollmentGroups": [{"enrollmentGroupId": f"bulk-group-{i}", "attestation": sym()} for i in range(3)],
    })
    assert groups["isSuccessful"] is True
    listed = [g["enrollmentGroupId"] for g in dps.enrollment_group.query(query_specification={"query": "SELECT *"}, top=1)]
    assert listed == [f"bulk-group-{i}" for i in range(3)]
    key = dps.enrollment_group.get_attestation_mechanism(id="bulk-group-1")["symmetricKey"]["primaryKey"]
    assert len(key) == 88


def test_registration_states_and_the_older_sdk(hub, dps):
    from provisioningserviceclient import (
        IndividualEnrollment, ProvisioningServiceClient, QuerySpecification,
    )
    from provisioningserviceclient.models import AttestationMechanism, SymmetricKeyAttestation

    # The older SDK takes the CA from REQUESTS_CA_BUNDLE (set by the hub fixture).
    old = ProvisioningServiceClient.create_from_connection_string(dps_info(hub)["serviceConnectionString"])
    key = new_key()
    enrollment = IndividualEnrollment.create(
        "old-sdk-1", AttestationMechanism(type="symmetricKey",
                                          symmetric_key=SymmetricKeyAttestation(primary_key=key, secondary_key=key)))
    made = old.create_or_update(enrollment)
    assert made.registration_id == "old-sdk-1"
    assert made.provisioning_status == "enabled"
    fetched = old.get_individual_enrollment("old-sdk-1")
    assert fetched.etag == made.etag
    query = old.create_individual_enrollment_query(QuerySpecification(query="*"), page_size=1)
    ids = [e.registration_id for page in query for e in page] if hasattr(query, "__iter__") else []
    assert "old-sdk-1" in ids

    # A registration state exists once the device registered (over the HTTPS device API).
    import time

    import requests

    from dps_helpers import sas

    scope = dps_info(hub)["idScope"]
    token = sas(f"{scope}/registrations/old-sdk-1", key, "registration")
    r = requests.put(f"https://{hub.address}/{scope}/registrations/old-sdk-1/register",
                     params={"api-version": "2019-03-31"}, json={"registrationId": "old-sdk-1"},
                     headers={"Authorization": token}, verify=hub.ca_file, timeout=30)
    assert r.status_code == 202, r.text

    def assigned():
        try:
            return dps.device_registration_state.get(id="old-sdk-1")["status"] == "assigned"
        except ResourceNotFoundError:
            return False

    deadline = time.monotonic() + 20
    while not assigned():
        assert time.monotonic() < deadline, "never assigned"
        time.sleep(0.2)
    state = old.get_registration_state("old-sdk-1")
    assert state.status == "assigned" and state.assigned_hub == hub.hostname
    # The enrollment shows its registration state.
    assert dps.enrollment.get(id="old-sdk-1")["registrationState"]["status"] == "assigned"
    # The device's own status lookup returns the same record.
    lookup = requests.post(f"https://{hub.address}/{scope}/registrations/old-sdk-1",
                           params={"api-version": "2019-03-31"}, json={"registrationId": "old-sdk-1"},
                           headers={"Authorization": token}, verify=hub.ca_file, timeout=30)
    assert lookup.status_code == 200 and lookup.json()["assignedHub"] == hub.hostname

    # Deleting the record leaves the hub device (deprovisioning is the hub's business).
    dps.device_registration_state.delete(id="old-sdk-1")
    with pytest.raises(ResourceNotFoundError):
        dps.device_registration_state.get(id="old-sdk-1")
    assert hub.registry_manager().get_device("old-sdk-1").device_id == "old-sdk-1"


def test_service_authorization(hub):
    """A token of the hub's policy, or a wrong key, gets DPS's 401."""
    from dps_helpers import sas

    parts = hub.connection_string_parts()
    import requests

    for token in [sas(hub.hostname, parts["SharedAccessKey"], "iothubowner"),
                  sas(hub.hostname, new_key(), "provisioningserviceowner")]:
        r = requests.get(f"https://{hub.address}/enrollments/anything", params={"api-version": "2021-10-01"},
                         headers={"Authorization": token}, verify=hub.ca_file, timeout=30)
        assert r.status_code == 401, r.text
        assert r.json()["errorCode"] == 401002
    assert dps_rest(hub, "GET", "/enrollments/anything").status_code == 404
