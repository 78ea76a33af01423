"""External services the conformance suite starts itself (a module starts each one once).

`nats_server(address, port)` runs Debian's `nats-server` with JetStream on one loopback address,
its data in a temporary directory, and stops it (and removes the data) when the block ends:

    with nats_server(test_address("127.0.0.110"), 4222) as url:
        ...  # url is "nats://127.0.0.110:4222"

`NatsServer` and `PostgresServer` are the same services as objects a failure test may `stop()`
and `start()` again over the same data (`with NatsServer(...) as nats:`, `nats.url`).
`NatsCluster(addresses)` is a JetStream cluster of one nats-server on each address (client
port, route port and monitoring port the same on every address), `url` the list of all of them
separated by commas; a test may `kill9(i)` one server and `start(i)` it again.
`azurite_blob(address, port, *args)` runs Azurite's blob service (npm `azurite`, in
`node/node_modules`) on one loopback address with its extra arguments, and kills it at the end:

    with azurite_blob(address, 10000, "--inMemoryPersistence"):
        ...  # http://{address}:10000/devstoreaccount1

`PostgresServer` is a private PostgreSQL (Debian's `postgresql`, as `scripts/test` starts one)
listening only on a Unix socket in its temporary directory; `admin_url` reaches its `postgres`
database as the superuser.
"""

from __future__ import annotations

import contextlib
import glob
import os
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

from conftest import NODE_DIR, _die_with_parent, _listening, _tail, require_tool

READY_TIMEOUT_S = 20.0
STOP_TIMEOUT_S = 10.0
AZURITE_READY_S = 30.0


@contextlib.contextmanager
def azurite_blob(address: str, port: int, *args: str):
    """Azurite's blob service on `address:port` with `args` (`--location`, `--cert`, …, or
    `--inMemoryPersistence`), `--skipApiVersionCheck --loose --silent` always; killed at the end."""
    azurite = NODE_DIR / "node_modules" / ".bin" / "azurite-blob"
    if shutil.which("node") is None or not azurite.exists():
        pytest.fail("node or azurite is missing: run the suite through scripts/test", pytrace=False)
    if _listening((address, port)):
        pytest.fail(f"something already listens on {address}:{port}", pytrace=False)
    logdir = Path(tempfile.mkdtemp(prefix="ironhub-azurite-log-"))
    log = open(logdir / "azurite.log", "w")
    proc = subprocess.Popen(
        [str(azurite), "--blobHost", address, "--blobPort", str(port), *args, "--skipApiVersionCheck", "--loose",
         "--silent"],
        cwd=NODE_DIR, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True,
    )
    try:
        deadline = time.monotonic() + AZURITE_READY_S
        # Azurite has no readiness notification; its port accepting is the event.
        while not _listening((address, port)):
            if proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"azurite did not start:\n{_tail(logdir / 'azurite.log')}", pytrace=False)
            time.sleep(0.1)
        yield
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=STOP_TIMEOUT_S)
        log.close()
        shutil.rmtree(logdir, ignore_errors=True)


# Storage limits independent of the free disk (see NatsServer.start).
JETSTREAM_LIMITS = "jetstream {\n  max_file_store: 64G\n  max_memory_store: 1G\n}\n"


class NatsServer:
    """A nats-server with JetStream (file storage) that can be stopped and started again."""

    def __init__(self, address: str, port: int = 4222, cluster_args: list[str] | None = None):
        require_tool("nats-server")
        self.address, self.port = address, port
        self.cluster_args = cluster_args or []
        self.data = Path(tempfile.mkdtemp(prefix="ironhub-nats-"))
        self.log = self.data / "nats.log"
        self.url = f"nats://{address}:{port}"
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        # JetStream reserves each stream's max_bytes against its storage limit, which by default
        # is 75% of the disk free when the server starts: a nearly full disk would refuse the
        # hub's streams (10047, insufficient storage) though a test writes only kilobytes.
        limits = self.data / "limits.conf"
        limits.write_text(JETSTREAM_LIMITS)
        self.proc = subprocess.Popen(
            ["nats-server", "-js", "-a", self.address, "-p", str(self.port), "-sd", str(self.data / "js"),
             "-c", str(limits), "-l", str(self.log), *self.cluster_args],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.STDOUT,
            preexec_fn=_die_with_parent,
        )
        deadline = time.monotonic() + READY_TIMEOUT_S
        # nats-server has no readiness notification; its port accepting is the event.
        while not _listening((self.address, self.port)):
            if self.proc.poll() is not None:
                raise RuntimeError(f"nats-server exited with {self.proc.returncode}:\n{_tail(self.log)}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"nats-server not listening on {self.address}:{self.port}:\n{_tail(self.log)}")
            time.sleep(0.05)

    def stop(self) -> None:
        """SIGTERM (nats-server flushes JetStream and exits), SIGKILL past the bound."""
        if self.proc is None:
            return
        self.proc.terminate()
        try:
            self.proc.wait(timeout=STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.proc = None

    def __enter__(self) -> "NatsServer":
        try:
            self.start()
        except BaseException:
            self.__exit__()
            raise
        return self

    def __exit__(self, *exc) -> None:
        self.stop()
        shutil.rmtree(self.data, ignore_errors=True)


def _direct(url: str, timeout: float):
    """Opens `url` on loopback, never through a proxy the environment names."""
    import urllib.request

    return urllib.request.build_opener(urllib.request.ProxyHandler({})).open(url, timeout=timeout)


class NatsCluster:
    """A JetStream cluster of three (or more) nats-servers, one on each address, routed to each
    other; each keeps its data in a temporary directory of its own."""

    def __init__(self, addresses: list[str], port: int = 4222, route_port: int = 6222, monitor_port: int = 8222):
        self.addresses, self.monitor_port = addresses, monitor_port
        routes = ",".join(f"nats://{a}:{route_port}" for a in addresses)
        self.servers = [
            NatsServer(address, port, [
                "--server_name", f"n{i}", "--cluster_name", "ironhub-test",
                "--cluster", f"nats://{address}:{route_port}", "--routes", routes,
                "-m", str(monitor_port),
            ])
            for i, address in enumerate(addresses, start=1)
        ]
        self.url = ",".join(s.url for s in self.servers)

    def start(self, i: int) -> None:
        """Starts server `i` (from 0) again and waits until it is healthy."""
        self.servers[i].start()
        self.wait_healthy(i)

    def wait_healthy(self, i: int) -> None:
        """Waits until server `i` answers `/healthz` (JetStream has a meta leader the server
        is current with)."""
        server = self.servers[i]
        deadline = time.monotonic() + READY_TIMEOUT_S * 3
        while not self._healthy(i):
            if server.proc is None or server.proc.poll() is not None:
                raise RuntimeError(f"nats-server {server.address} exited:\n{_tail(server.log)}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"nats-server {server.address} not healthy:\n{_tail(server.log)}")
            time.sleep(0.1)

    def _healthy(self, i: int) -> bool:
        import urllib.error

        try:
            with _direct(f"http://{self.addresses[i]}:{self.monitor_port}/healthz", 2) as r:
                return r.status == 200
        except (urllib.error.URLError, OSError):
            return False

    def jsz(self, i: int) -> dict:
        """Server `i`'s JetStream report with its streams and their configurations."""
        import json

        url = f"http://{self.addresses[i]}:{self.monitor_port}/jsz?streams=true&config=true"
        with _direct(url, 5) as r:
            return json.load(r)

    def kill9(self, i: int) -> None:
        """SIGKILL: no chance to flush or step down."""
        server = self.servers[i]
        assert server.proc is not None, "not running"
        server.proc.kill()
        server.proc.wait()
        server.proc = None

    def __enter__(self) -> "NatsCluster":
        try:
            # All at once: no server is healthy before the others are routed to it.
            for server in self.servers:
                server.start()
            for i in range(len(self.servers)):
                self.wait_healthy(i)
        except BaseException:
            self.__exit__()
            raise
        return self

    def __exit__(self, *exc) -> None:
        for server in self.servers:
            server.__exit__()


@contextlib.contextmanager
def nats_server(address: str, port: int = 4222):
    with NatsServer(address, port) as nats:
        yield nats.url


class PostgresServer:
    """A PostgreSQL of a test's own on a Unix socket, stopped and started at will."""

    def __init__(self):
        bins = sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=lambda p: [int(x) for x in p.split("/")[4].split(".") if x.isdigit()])
        if not bins or not os.access(f"{bins[-1]}/initdb", os.X_OK):
            require_tool("initdb")  # skips, or fails in CI, with the usual message
        self.bin = bins[-1]
        self.dir = Path(tempfile.mkdtemp(prefix="ironhub-pg-"))
        self.as_user = []
        if os.getuid() == 0:
            # initdb refuses root: the server runs as `postgres`.
            shutil.chown(self.dir, "postgres")
            self.as_user = ["runuser", "-u", "postgres", "--"]
        self.admin_url = f"postgresql://postgres@/postgres?host={self.dir}"
        self._run("initdb", "-D", str(self.dir / "data"), "-U", "postgres", "--auth=trust", "-E", "UTF8", "--no-sync")

    def _run(self, tool: str, *args: str) -> None:
        subprocess.run([*self.as_user, f"{self.bin}/{tool}", *args], check=True, capture_output=True,
                       timeout=60, preexec_fn=_die_with_parent)

    def start(self) -> None:
        self._run("pg_ctl", "-D", str(self.dir / "data"), "-l", str(self.dir / "log"), "-w",
                  "-o", f"-c listen_addresses='' -k {self.dir} -c max_connections=200 -c fsync=off", "start")

    def stop(self) -> None:
        """A fast shutdown: open sessions are ended, as when an operator restarts the server."""
        self._run("pg_ctl", "-D", str(self.dir / "data"), "-m", "fast", "-w", "stop")

    def __enter__(self) -> "PostgresServer":
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        with contextlib.suppress(subprocess.SubprocessError):
            self._run("pg_ctl", "-D", str(self.dir / "data"), "-m", "immediate", "stop")
        shutil.rmtree(self.dir, ignore_errors=True)
