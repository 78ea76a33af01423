"""Shared fixtures for the real-client conformance suite.

Each test module runs one real `ironhub serve` process on its own loopback address, so modules
can run side by side: the Python device SDK hard-codes ports 443 and 8883, so the address is the
only thing that can differ. A module picks its address with a module-level constant:

    IRONHUB_ADDRESS = "127.0.0.3"

(the default is 127.0.0.2). `IRONHUB_TEST_NET` (default `127.0.0`) replaces the address's first
three octets, so two checkouts can run the suite side by side on one machine: with
`IRONHUB_TEST_NET=127.0.1`, 127.0.0.5 becomes 127.0.1.5. A module that needs its address at
import time writes `IRONHUB_ADDRESS = test_address("127.0.0.5")`. Tests get the running server
through the `hub` fixture, which offers
`kill9()`, `restart()`, the connection string, the CA file, and `registry_manager()`.

The binary is `$IRONHUB_BIN` (`scripts/test` sets it to the freshly built debug binary).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

DEFAULT_ADDRESS = "127.0.0.2"
TEST_NET = os.environ.get("IRONHUB_TEST_NET", "127.0.0")
READY_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 10.0
CLI_TIMEOUT_S = 30.0
LOG_TAIL_LINES = 200


def test_address(address: str) -> str:
    """`address` moved into the `IRONHUB_TEST_NET` network: its first three octets replaced.
    Idempotent, so the `hub` fixture applies it again to whatever a module declared."""
    net = TEST_NET.split(".")
    if len(net) != 3 or not all(o.isdigit() and 0 <= int(o) <= 255 for o in net):
        pytest.fail(f"IRONHUB_TEST_NET={TEST_NET!r} is not three octets such as 127.0.1", pytrace=False)
    return ".".join(net + [address.split(".")[3]])


test_address.__test__ = False  # not a test, despite its name


def in_ci() -> bool:
    return os.environ.get("CI", "").lower() in ("1", "true", "yes")


def have_tool(name: str) -> bool:
    """Whether a command-line tool (`openssl`, `mosquitto_pub`, …) is installed. In CI
    (`CI=true`) a missing tool fails the test, so that no scenario leaves the suite silently."""
    if shutil.which(name):
        return True
    if in_ci():
        pytest.fail(f"{name} is not installed, and CI=true (scripts/test installs it as root)", pytrace=False)
    return False


def require_tool(name: str) -> None:
    """Skips the test when a command-line tool is missing; in CI (`CI=true`) fails it."""
    if not have_tool(name):
        pytest.skip(f"{name} is not installed (scripts/test installs it as root)")


def ironhub_bin() -> str:
    path = os.environ.get("IRONHUB_BIN")
    if not path:
        pytest.fail("IRONHUB_BIN is not set: run the suite through scripts/test", pytrace=False)
    if not os.access(path, os.X_OK):
        pytest.fail(f"IRONHUB_BIN={path} is not an executable file", pytrace=False)
    return path


def run_cli(*args: str, timeout: float = CLI_TIMEOUT_S, check: bool = False, env=None):
    """Runs `ironhub <args>` and returns the CompletedProcess (text mode)."""
    proc = subprocess.run(
        [ironhub_bin(), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
        env=env,
    )
    if check and proc.returncode != 0:
        raise AssertionError(
            f"`ironhub {' '.join(args)}` exited with {proc.returncode}\n"
            f"stdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"
        )
    return proc


NODE_DIR = Path(__file__).resolve().parent / "node"


def node_json(script: str, *args: str, env: dict, timeout: float = 60) -> dict:
    """Runs `node/{script}` with `args` and the extra `env`, and returns the JSON object it
    printed last (see node/output.js), failing the test on an `error` answer."""
    if shutil.which("node") is None:
        pytest.fail("`node` is not installed: run the suite through scripts/test", pytrace=False)
    proc = subprocess.run(
        ["node", str(NODE_DIR / script), *args], cwd=NODE_DIR, env=dict(os.environ, **env),
        capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL,
    )
    lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
    assert lines, f"`node {script}` printed no JSON (exit {proc.returncode})\n{proc.stdout}\n{proc.stderr[-6000:]}"
    out = json.loads(lines[-1])
    assert "error" not in out, f"{out}\n{proc.stderr[-6000:]}"
    return out


def _tail(path: Path, lines: int = LOG_TAIL_LINES) -> str:
    try:
        text = path.read_text(errors="replace")
    except FileNotFoundError:
        return "(no file)"
    rows = text.splitlines()
    if len(rows) > lines:
        rows = [f"... ({len(rows) - lines} earlier lines in {path})"] + rows[-lines:]
    return "\n".join(rows) if rows else "(empty)"


def _die_with_parent() -> None:
    """In the child before exec: get SIGKILL when pytest dies, however it dies, so that no
    server outlives the run and holds 127.0.0.X:443 against the next one."""
    try:
        import ctypes

        PR_SET_PDEATHSIG = 1
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    except Exception:
        pass


def _listening(addr: tuple[str, int]) -> bool:
    try:
        with socket.create_connection(addr, timeout=1.0):
            return True
    except OSError:
        return False


def assert_hub_error(excinfo, status: int, error_code: str) -> None:
    """The service SDK's `HttpOperationError` (in `excinfo`) answered `status` with IoT Hub's
    error code in the `iothub-errorcode` header."""
    response = excinfo.value.response
    assert response.status_code == status, f"expected HTTP {status}, got {response.status_code}: {response.text}"
    assert response.headers.get("iothub-errorcode") == error_code, response.text


def closed_by_server(sock: socket.socket, within: float = 5.0) -> bool:
    """True when the server ends the connection within `within` seconds (EOF or reset); False
    when it is still open then (a timeout is not a close)."""
    sock.settimeout(within)
    try:
        while True:
            if sock.recv(1024) == b"":
                return True
    except (socket.timeout, TimeoutError):
        return False
    except OSError:  # a reset, or a TLS error (ssl.SSLError is an OSError)
        return True


class IronHub:
    """One `ironhub serve` process on `address`, with its data in `workdir/data`."""

    def __init__(self, address: str, workdir: Path, extra_args: list[str] | None = None):
        self.address = address
        self.extra_args = extra_args or []
        self.workdir = workdir
        self.data_dir = workdir / "data"
        self.stdout_path = workdir / "server.stdout"
        self.stderr_path = workdir / "server.stderr"
        self.https = (address, 443)
        self.mqtt = (address, 8883)
        self.amqp = (address, 5671)
        self.proc: subprocess.Popen | None = None
        self.starts = 0
        self.info: dict = {}

    # -- lifecycle -----------------------------------------------------------------------------

    def args(self) -> list[str]:
        return [
            ironhub_bin(),
            "serve",
            "--data-dir",
            str(self.data_dir),
            "--hostname",
            self.address,
            "--https-listen",
            f"{self.address}:443",
            "--mqtt-listen",
            f"{self.address}:8883",
            "--amqp-listen",
            f"{self.address}:5671",
            *self.extra_args,
        ]

    def start(self) -> None:
        assert self.proc is None, "already running"
        if _listening(self.https):
            pytest.fail(
                f"something already listens on {self.address}:443 (a server left over from an "
                "earlier run?); the readiness check would mistake it for this server",
                pytrace=False,
            )
        self.starts += 1
        marker = f"===== ironhub start #{self.starts} at {time.strftime('%H:%M:%S')} =====\n"
        # Append, so the logs of earlier runs (before kill9/restart) stay readable.
        with open(self.stdout_path, "a") as out, open(self.stderr_path, "a") as err:
            out.write(marker)
            err.write(marker)
            out.flush()
            err.flush()
            self.proc = subprocess.Popen(
                self.args(),
                stdout=out,
                stderr=err,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
                preexec_fn=_die_with_parent,
            )
        self._wait_ready()
        self.info = self._read_info()

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + READY_TIMEOUT_S
        last_error = None
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                code = self.proc.returncode
                self.proc = None
                pytest.fail(
                    f"ironhub serve exited with {code} before listening on "
                    f"{self.address}:443\n--- stderr ---\n{_tail(self.stderr_path)}",
                    pytrace=False,
                )
            try:
                with socket.create_connection(self.https, timeout=1.0):
                    return
            except OSError as e:
                last_error = e
                time.sleep(0.05)
        self._kill()
        pytest.fail(
            f"ironhub serve did not accept TCP on {self.address}:443 within "
            f"{READY_TIMEOUT_S:.0f} s (last error: {last_error})\n"
            f"--- stderr ---\n{_tail(self.stderr_path)}",
            pytrace=False,
        )

    def _read_info(self) -> dict:
        proc = run_cli("info", "--data-dir", str(self.data_dir), "--json", check=True)
        try:
            info = json.loads(proc.stdout)
        except json.JSONDecodeError as e:
            raise AssertionError(f"`ironhub info --json` printed invalid JSON ({e}):\n{proc.stdout}")
        assert info["hub"]["hostName"] == self.address, info
        assert Path(info["tls"]["caCertificate"]).is_absolute(), info
        assert Path(info["tls"]["caCertificate"]).is_file(), info
        return info

    def _kill(self, sig: int = signal.SIGKILL) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, sig)
            except ProcessLookupError:
                pass
            try:
                self.proc.wait(timeout=STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=STOP_TIMEOUT_S)
        self.proc = None

    def kill9(self) -> None:
        """SIGKILL: no chance to flush or shut down cleanly."""
        assert self.proc is not None, "not running"
        self._kill(signal.SIGKILL)

    def stop(self) -> None:
        """SIGTERM, then SIGKILL if it does not exit within the bound."""
        self._kill(signal.SIGTERM)

    def restart(self) -> None:
        """Starts again with the same data directory and flags (stops it first if running)."""
        if self.proc is not None:
            self.stop()
        self.start()

    # -- what tests use ------------------------------------------------------------------------

    @property
    def hostname(self) -> str:
        return self.info["hub"]["hostName"]

    @property
    def connection_string(self) -> str:
        return self.info["hub"]["connectionString"]

    @property
    def ca_file(self) -> str:
        return self.info["tls"]["caCertificate"]

    def connection_string_parts(self) -> dict:
        return dict(p.split("=", 1) for p in self.connection_string.split(";") if p)

    def registry_manager(self, connection_string: str | None = None):
        """An `IoTHubRegistryManager` from the real SDK, trusting this server's CA."""
        from azure.iot.hub import IoTHubRegistryManager

        rm = IoTHubRegistryManager.from_connection_string(
            connection_string or self.connection_string
        )
        # REQUESTS_CA_BUNDLE is set too (see the fixture); this makes the trust explicit.
        rm.protocol.config.connection.verify = self.ca_file
        return rm

    def logs(self) -> str:
        return (
            f"--- ironhub stderr ({self.stderr_path}) ---\n{_tail(self.stderr_path)}\n"
            f"--- ironhub stdout ({self.stdout_path}) ---\n{_tail(self.stdout_path)}"
        )


@contextlib.contextmanager
def server_workdir(prefix: str):
    """A temporary directory for servers' data and logs, removed at the end unless
    `IRONHUB_KEEP_TMP` is set."""
    workdir = Path(tempfile.mkdtemp(prefix=prefix))
    try:
        yield workdir
    finally:
        if os.environ.get("IRONHUB_KEEP_TMP"):
            print(f"kept {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)


@contextlib.contextmanager
def serving(servers: list[IronHub]):
    """Kills `servers` at the end, however the block ends, and meanwhile makes `requests` (the
    service SDKs) trust the first one's CA through `REQUESTS_CA_BUNDLE` (restored after)."""
    saved_bundle = os.environ.get("REQUESTS_CA_BUNDLE")
    try:
        os.environ["REQUESTS_CA_BUNDLE"] = servers[0].ca_file
        yield servers
    finally:
        for server in servers:
            server._kill(signal.SIGKILL)
        if saved_bundle is None:
            os.environ.pop("REQUESTS_CA_BUNDLE", None)
        else:
            os.environ["REQUESTS_CA_BUNDLE"] = saved_bundle


@pytest.fixture(scope="module")
def hub(request):
    """The module's running server. Module-scoped: tests in a module share one server. A module
    may define `ironhub_args(workdir) -> list[str]`: more `serve` arguments, made in the
    server's working directory before it starts (a config file, say)."""
    address = test_address(getattr(request.module, "IRONHUB_ADDRESS", DEFAULT_ADDRESS))
    make_args = getattr(request.module, "ironhub_args", None)
    with server_workdir(f"ironhub-{request.module.__name__}-") as workdir:
        server = IronHub(address, workdir, make_args(workdir) if make_args else None)
        try:
            server.start()
        except BaseException:
            server._kill(signal.SIGKILL)
            raise
        with serving([server]):
            yield server


def amqp_registry_manager(server: IronHub):
    """A registry manager whose AMQP client (the C2D send) trusts `server`'s CA. uamqp reads
    its CA bundle from certifi when the client is built and azure-iot-hub offers no way to pass
    one, so the bundle's path is pointed at the server's CA for the construction."""
    import uamqp.authentication.common as uamqp_common

    real = uamqp_common.certifi.where
    uamqp_common.certifi.where = lambda: server.ca_file
    try:
        return server.registry_manager()
    finally:
        uamqp_common.certifi.where = real


@pytest.fixture(scope="module")
def amqp_registry(hub):
    """The module's `amqp_registry_manager`, disconnected at the end."""
    manager = amqp_registry_manager(hub)
    yield manager
    manager.amqp_svc_client.disconnect_sync()


@pytest.fixture
def rm(hub):
    """A registry manager (real `azure-iot-hub` SDK) with the owner connection string."""
    return hub.registry_manager()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """On failure, attach the logs of the server(s) the test used to the report."""
    outcome = yield
    report = outcome.get_result()
    if report.failed:
        funcargs = getattr(item, "funcargs", {}) or {}
        seen = set()
        for value in funcargs.values():
            if isinstance(value, IronHub) and id(value) not in seen:
                seen.add(id(value))
                report.sections.append((f"ironhub {value.address} logs", value.logs()))


def pytest_sessionfinish(session, exitstatus):
    """Collect the SDK clients now: `IoTHubRegistryManager.__del__` disconnects its AMQP client,
    and at interpreter exit that prints noise after pytest's closing summary line."""
    import gc

    gc.collect()
