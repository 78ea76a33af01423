"""Credit bursts: the server grants a receiving link 200 credits at a time (fe2o3-amqp's
default, topped up as it settles), and the real SDKs burst far past that. The Node device SDK
(`azure-iot-device-amqp`, `Amqp` and `AmqpWs`) is handed 1,000 telemetry messages at once, and
the Node service SDK (`azure-iothub`) 1,000 cloud-to-device sends at once; both hold what the
credit does not let through and send it as the server's flows grant more. Every send succeeds,
every accepted message is stored exactly once, and the server's memory stays bounded.
"""

from __future__ import annotations

import pytest

from conftest import node_json, test_address
from dps_helpers import stored_events

IRONHUB_ADDRESS = test_address("127.0.0.59")
BURST = 1000
NODE_TIMEOUT_S = 120
# What a burst of small messages may add to the server's resident memory: generous for
# allocator slack, far below what holding a backlog per message without bound would take.
MAX_GROWTH_BYTES = 96 * 1024 * 1024


def rss(hub) -> int:
    """The server process's resident set size, in bytes."""
    with open(f"/proc/{hub.proc.pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS in /proc/{pid}/status")


def env(hub) -> dict:
    return {"NODE_EXTRA_CA_CERTS": hub.ca_file, "IRONHUB_CONNECTION_STRING": hub.connection_string}


@pytest.mark.parametrize("transport", ["amqp", "amqpws"])
def test_a_telemetry_burst_past_the_credit_is_stored_exactly_once(hub, transport):
    device_id = f"burst-{transport}"
    rm = hub.registry_manager()
    key = rm.create_device_with_sas(device_id, None, None, "enabled").authentication.symmetric_key.primary_key
    before = rss(hub)
    args = ["telemetry", "--connection-string",
            f"HostName={hub.hostname};DeviceId={device_id};SharedAccessKey={key}", "--count", str(BURST)]
    if transport == "amqpws":
        args.append("--ws")
    out = node_json("burst.js", *args, env=env(hub), timeout=NODE_TIMEOUT_S)
    assert out == {"sent": BURST, "failed": []}, out["failed"][:5]
    growth = rss(hub) - before
    events = stored_events(hub, device_id)
    ids = [e["systemProperties"]["message-id"] for e in events]
    assert len(ids) == BURST, f"{len(ids)} events for {BURST} accepted sends"
    assert sorted(ids) == sorted(f"burst-{i}" for i in range(BURST))
    assert all(e["applicationProperties"]["i"] == e["systemProperties"]["message-id"][6:] for e in events)
    assert growth < MAX_GROWTH_BYTES, f"the server grew by {growth / 2**20:.0f} MiB"


def test_a_cloud_to_device_burst_past_the_credit_is_queued_exactly_once(hub):
    # IoT Hub queues at most 50 messages per device: 20 devices take 1,000 sends in full.
    devices = [f"c2d-burst-{n}" for n in range(20)]
    per = BURST // len(devices)
    rm = hub.registry_manager()
    for device_id in devices:
        rm.create_device_with_sas(device_id, None, None, "enabled")
    before = rss(hub)
    out = node_json("burst.js", "c2d", "--devices", ",".join(devices), "--per", str(per),
                    env=env(hub), timeout=NODE_TIMEOUT_S)
    assert out == {"sent": BURST, "failed": []}, out["failed"][:5]
    growth = rss(hub) - before
    # Each queue holds exactly what was sent to it: a message queued twice would show in the
    # count (and the 51st would have been refused, failing a send).
    counts = {d: rm.get_device(d).cloud_to_device_message_count for d in devices}
    assert counts == {d: per for d in devices}
    assert growth < MAX_GROWTH_BYTES, f"the server grew by {growth / 2**20:.0f} MiB"
