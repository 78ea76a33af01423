"""Configurations on the PostgreSQL store: one `ironhub serve --store postgres://… --nats …` over
a database of this module's own (on the PostgreSQL scripts/test starts) and a nats-server it
starts. The Python `IoTHubConfigurationManager` creates, reads, updates (compare-and-swap on the
etag) and deletes a configuration, the hub applies it to the twin it targets, and what was
acknowledged survives `kill -9`."""

from __future__ import annotations

import os

import pytest
from azure.iot.hub import IoTHubConfigurationManager
from azure.iot.hub.models import Configuration, ConfigurationContent, Twin
from msrest.exceptions import HttpOperationError

from conftest import test_address
from dps_helpers import wait_for
from services import nats_server
from cluster_helpers import cluster, fresh_database, postgres_admin_url

ADDRESS = test_address("127.0.0.33")
NATS_ADDRESS = test_address("127.0.0.34")
NATS_PORT = 4222
APPLY_WAIT_S = 30


@pytest.fixture(scope="module")
def pg_hub():
    """One node on a database of its own and a nats-server of its own (the cluster modules'
    helpers, with a single node)."""
    with fresh_database(postgres_admin_url(), f"ironhub_configs_{os.getpid()}") as store:
        with nats_server(NATS_ADDRESS, NATS_PORT) as nats_url:
            with cluster(store, nats_url, [ADDRESS], prefix="ironhub-configs-pg-") as nodes:
                yield nodes[0]


def manager(hub) -> IoTHubConfigurationManager:
    m = IoTHubConfigurationManager.from_connection_string(hub.connection_string)
    m.protocol.config.connection.verify = hub.ca_file
    return m


def test_configurations_are_kept_and_applied_on_postgresql(pg_hub):
    rm = pg_hub.registry_manager()
    cm = manager(pg_hub)
    rm.create_device_with_sas("thermostat", "", "", "enabled")
    rm.update_twin("thermostat", Twin(tags={"building": "43"}), "*")
    config = Configuration(
        id="firmware-2", priority=10, target_condition="tags.building = '43'",
        content=ConfigurationContent(device_content={"properties.desired.firmware": {"version": "2.0"}}))
    created = cm.create_configuration(config)
    assert created.id == "firmware-2" and created.etag
    with pytest.raises(HttpOperationError) as e:
        cm.create_configuration(config)
    assert e.value.response.status_code == 409

    def applied() -> bool:
        return rm.get_twin("thermostat").properties.desired.get("firmware") == {"version": "2.0"}

    wait_for(applied, timeout=APPLY_WAIT_S, what="the configuration applied")

    created.priority = 20
    updated = cm.update_configuration(created, created.etag)
    assert updated.priority == 20 and updated.etag != created.etag
    # A stale etag changes nothing.
    created.priority = 30
    with pytest.raises(HttpOperationError) as e:
        cm.update_configuration(created, created.etag)
    assert e.value.response.status_code == 412
    assert cm.get_configuration("firmware-2").priority == 20

    # Acknowledged, it survives kill -9.
    pg_hub.kill9()
    pg_hub.restart()
    cm = manager(pg_hub)
    assert [c.id for c in cm.get_configurations(10)] == ["firmware-2"]
    assert cm.get_configuration("firmware-2").priority == 20
    cm.delete_configuration("firmware-2")
    assert cm.get_configurations(10) == []
