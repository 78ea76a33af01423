"""Linked hubs in the web console's DPS overview, driven in headless Chromium by
`node/console_dps.js` (hubs mode), with two real ironhub servers: A (the DPS, and its own hub)
and B (another hub, linked from A's console by its owner connection string). The overview shows
the ID scope and endpoints; a bad connection string, a device's connection string, a bad weight
and a duplicate link are refused beside their field with nothing linked; B is linked with a
weight and location and its row shows the latency DPS measured; a device with static
allocation to B provisions with the Python SDK and lands on B; B is unlinked after a
confirmation page; a DPS policy without ServiceConfig sees no link or unlink controls and its
forged posts are refused. Screenshots at 390 and 1280 px wide, with no horizontal overflow.
"""

from __future__ import annotations

import shutil
import signal

import pytest
from azure.iot.device import ProvisioningDeviceClient

from conftest import test_address
from console_helpers import add_dps_policy, drive
from dps_helpers import dps_info, dps_rest, new_key
from test_dps_hubs import start_server

A_ADDRESS = test_address("127.0.0.88")
B_ADDRESS = test_address("127.0.0.89")
READER_KEY = "bm8gc2VydmljZSBjb25maWcgZm9yIHRoaXMgcG9saWN5"


@pytest.fixture(scope="module")
def hub_b():
    b = start_server(B_ADDRESS, [])
    yield b
    b._kill(signal.SIGKILL)
    shutil.rmtree(b.workdir, ignore_errors=True)


@pytest.fixture(scope="module")
def hub(hub_b):
    """A: the DPS, trusting B's CA for its calls to B's registry, with a DPS policy that has
    every right but ServiceConfig."""
    a = start_server(A_ADDRESS, ["--trust-ca", hub_b.ca_file])
    try:
        a.stop()
        add_dps_policy(a, "enrollments", READER_KEY,
                       "EnrollmentRead, EnrollmentWrite, RegistrationStatusRead, RegistrationStatusWrite")
        a.start()
        yield a
    finally:
        a._kill(signal.SIGKILL)
        shutil.rmtree(a.workdir, ignore_errors=True)


def linked_names(hub) -> list[str]:
    r = dps_rest(hub, "GET", "/dps/linkedHubs")
    assert r.status_code == 200, r.text
    return sorted(h["name"] for h in r.json()["value"])


def test_linking_and_unlinking_a_hub_in_the_console(hub, hub_b, tmp_path):
    info = dps_info(hub)
    key = new_key()
    rid = "console-static-to-b"
    provisioned = {}

    def answer(step, msg):
        if step == "other-hub":
            return {"connectionString": hub_b.connection_string, "name": hub_b.hostname}
        if step == "nothing-linked":
            assert linked_names(hub) == [hub.hostname]
        elif step == "linked":
            listed = {h["name"]: h for h in dps_rest(hub, "GET", "/dps/linkedHubs").json()["value"]}
            assert listed[hub_b.hostname]["allocationWeight"] == 2, listed
            assert listed[hub_b.hostname]["location"] == "lab", listed
            # A device whose enrollment names B (static allocation) is assigned there.
            r = dps_rest(hub, "PUT", f"/enrollments/{rid}", {
                "registrationId": rid,
                "attestation": {"type": "symmetricKey", "symmetricKey": {"primaryKey": key, "secondaryKey": key}},
                "allocationPolicy": "static", "iotHubHostName": hub_b.hostname,
            })
            assert r.status_code == 200, r.text
            client = ProvisioningDeviceClient.create_from_symmetric_key(
                provisioning_host=hub.address, registration_id=rid, id_scope=info["idScope"],
                symmetric_key=key, server_verification_cert=open(hub.ca_file).read(),
            )
            provisioned["result"] = client.register()
        elif step == "unlinked":
            assert linked_names(hub) == [hub.hostname]
        return None

    reader = f"HostName={hub.hostname};SharedAccessKeyName=enrollments;SharedAccessKey={READER_KEY}"
    result = drive("console_dps.js", [f"https://{hub.hostname}", str(tmp_path), "hubs"],
                   {"IRONHUB_DPS_CONNECTION_STRING": info["serviceConnectionString"],
                    "IRONHUB_DPS_READ_CONNECTION_STRING": reader}, answer)

    # The overview's ID scope and endpoints.
    assert result["idScope"] == info["idScope"]
    assert result["deviceEndpoint"] == hub.hostname
    assert result["serviceEndpoint"] == f"https://{hub.hostname}"
    # Refusals beside their field.
    assert result["badStatus"] == 400 and "connection string" in result["badMessage"], result
    assert result["deviceStringStatus"] == 400 and "device connection string" in result["deviceStringMessage"], result
    assert result["badWeightStatus"] == 400 and "allocation weight" in result["badWeightMessage"], result
    assert result["duplicateStatus"] == 409 and "linked already" in result["duplicateMessage"], result
    # B linked, with the round trip DPS measured when it checked the hub.
    assert result["linkStatus"] == 200 and f"{hub_b.hostname} is linked." in result["linkNotice"], result
    row = result["linkedRow"]
    assert row["weight"] == "2" and row["location"] == "lab", row
    assert row["latency"].endswith(" ms"), row
    # The device provisioned to B, and exists there only.
    state = provisioned["result"]
    assert state.status == "assigned"
    assert state.registration_state.assigned_hub == hub_b.hostname
    assert hub_b.registry_manager().get_device(rid).device_id == rid
    with pytest.raises(Exception):
        hub.registry_manager().get_device(rid)
    # Unlinked after the confirmation; the device stays on B.
    assert hub_b.hostname in result["confirmTitle"]
    assert result["rowAfterUnlink"] is None
    assert hub_b.registry_manager().get_device(rid).device_id == rid
    # The policy without ServiceConfig: no controls, forged posts refused, nothing changed.
    assert result["readerForms"] == 0
    assert result["forgedLinkStatus"] == 401
    assert result["forgedUnlinkStatus"] == 401
    assert result["forgedConfirmStatus"] == 401
    assert linked_names(hub) == [hub.hostname]
    # Screenshots at both widths, nothing wider than the screen.
    assert len(result["fits"]) == 4 and all(result["fits"].values()), result["fits"]
    for name in ("dps-linked-hubs", "dps-unlink"):
        for width in ("phone", "desktop"):
            assert (tmp_path / f"{name}-{width}.png").stat().st_size > 0
