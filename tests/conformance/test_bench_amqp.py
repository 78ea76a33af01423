"""`ironhub-bench amqp` at a tiny size (10 devices × 10 messages, one round, the debug build
beside `IRONHUB_BIN`), so that the benchmark cannot rot between the runs that measure with it:
both ingests (MQTT and AMQP) complete, and every acknowledged event is read back over AMQP
partition receivers and through the REST NDJSON stream (the bench fails a read that finds
fewer). The figures themselves mean nothing at this size and on a debug build."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import pytest

from conftest import ironhub_bin, test_address

ADDRESS = test_address("127.0.0.92")
TIMEOUT_S = 100
ROWS = (
    "MQTT QoS 1 ingest, messages/s",
    "AMQP ingest, messages/s",
    "Event Hubs read over AMQP, events/s",
    "REST NDJSON stream read, events/s",
)


def bench_bin() -> str:
    path = Path(ironhub_bin()).with_name("ironhub-bench")
    if not os.access(path, os.X_OK):
        pytest.fail(f"{path} was not built (scripts/test builds every binary)", pytrace=False)
    return str(path)


def test_amqp_mode_ingests_and_reads_every_event_back(tmp_path):
    proc = subprocess.run(
        [bench_bin(), "amqp", "--ironhub", ironhub_bin(), "--address", ADDRESS,
         "--rounds", "1", "--devices", "10", "--messages", "10", "--inflight", "5",
         "--payload", "64"],
        capture_output=True, text=True, timeout=TIMEOUT_S, stdin=subprocess.DEVNULL,
        cwd=tmp_path, env={k: v for k, v in os.environ.items() if not k.startswith("IRONHUB_")},
    )
    assert proc.returncode == 0, f"exit {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
    table = {}
    for line in proc.stdout.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if cells and cells[0] in ROWS:
            table[cells[0]] = cells[1:]
    assert set(table) == set(ROWS), proc.stdout
    for name, (rounds, vs_mqtt, vs_amqp) in table.items():
        # One round: "figure (median)", both the same positive rate.
        m = re.fullmatch(r"([0-9.]+) \(([0-9.]+)\)", rounds)
        assert m and float(m.group(1)) > 0 and m.group(1) == m.group(2), (name, rounds)
        if name == ROWS[0]:
            assert vs_mqtt == vs_amqp == "–", (name, vs_mqtt, vs_amqp)
        elif name == ROWS[1]:
            assert re.fullmatch(r"[0-9.]+ \([0-9.]+\)", vs_mqtt) and vs_amqp == "–", (name, vs_mqtt)
        else:
            for ratio in (vs_mqtt, vs_amqp):
                assert re.fullmatch(r"[0-9.]+ \([0-9.]+\)", ratio), (name, ratio)
