"""External services the conformance suite starts itself (a module starts each one once).

`nats_server(address, port)` runs Debian's `nats-server` with JetStream on one loopback address,
its data in a temporary directory, and stops it (and removes the data) when the block ends:

    with nats_server(test_address("127.0.0.110"), 4222) as url:
        ...  # url is "nats://127.0.0.110:4222"
"""

from __future__ import annotations

import contextlib
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

from conftest import _die_with_parent, _listening, _tail, require_tool

READY_TIMEOUT_S = 20.0


@contextlib.contextmanager
def nats_server(address: str, port: int = 4222):
    require_tool("nats-server")
    data = Path(tempfile.mkdtemp(prefix="ironhub-nats-"))
    log = data / "nats.log"
    proc = subprocess.Popen(
        ["nats-server", "-js", "-a", address, "-p", str(port), "-sd", str(data / "js"), "-l", str(log)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.STDOUT,
        preexec_fn=_die_with_parent,
    )
    try:
        deadline = time.monotonic() + READY_TIMEOUT_S
        # nats-server has no readiness notification; its port accepting is the event.
        while not _listening((address, port)):
            if proc.poll() is not None:
                raise RuntimeError(f"nats-server exited with {proc.returncode}:\n{_tail(log)}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"nats-server not listening on {address}:{port}:\n{_tail(log)}")
            time.sleep(0.05)
        yield f"nats://{address}:{port}"
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        shutil.rmtree(data, ignore_errors=True)
