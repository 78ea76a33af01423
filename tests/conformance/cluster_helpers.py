"""What the cluster modules (`test_cluster.py`, `test_cluster_failures.py`) share: a database of
their own, nodes of `ironhub serve --store postgres://… --nats … --node-id …` started together,
and the hub read through `ironhub info --store`.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import urllib.parse
from pathlib import Path

import pytest

from conftest import IronHub, require_tool, run_cli, serving, server_workdir


def postgres_admin_url() -> str:
    """The suite's PostgreSQL (`IRONHUB_TEST_POSTGRES_URL`, which scripts/test sets)."""
    url = os.environ.get("IRONHUB_TEST_POSTGRES_URL")
    if not url:
        if os.environ.get("CI"):
            pytest.fail("IRONHUB_TEST_POSTGRES_URL is not set (scripts/test starts a PostgreSQL)", pytrace=False)
        pytest.skip("IRONHUB_TEST_POSTGRES_URL is not set (scripts/test starts a PostgreSQL and sets it)")
    return url


def with_database(url: str, database: str) -> str:
    parts = urllib.parse.urlsplit(url)
    return urllib.parse.urlunsplit(parts._replace(path=f"/{database}"))


@contextlib.contextmanager
def fresh_database(admin: str, name: str):
    """A new database `name` on the server of `admin` (a URL), dropped at the end; yields its URL."""
    require_tool("psql")

    def psql(sql: str) -> None:
        subprocess.run(["psql", admin, "-v", "ON_ERROR_STOP=1", "-qc", sql], check=True, capture_output=True, timeout=60)

    psql(f"DROP DATABASE IF EXISTS {name}")
    psql(f"CREATE DATABASE {name}")
    try:
        yield with_database(admin, name)
    finally:
        with contextlib.suppress(subprocess.SubprocessError):
            psql(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


class Node(IronHub):
    """One node of the cluster; `ironhub info` reads the hub from the shared store, and the
    test reaches the node at its own address."""

    def __init__(self, address: str, workdir: Path, store: str, extra_args: list[str], peers: list[str]):
        super().__init__(address, workdir, extra_args)
        self.store = store
        self.peers = peers

    def launch(self) -> None:
        """Starts the process without waiting for it (from the main thread: the server dies
        with the thread that started it)."""
        self._deferred = True
        try:
            self.start()
        finally:
            self._deferred = False

    def wait_started(self) -> None:
        """Waits until a launched node listens, then reads the hub."""
        self._wait_ready()
        self.info = self._read_info()

    def _wait_ready(self) -> None:
        if not getattr(self, "_deferred", False):
            super()._wait_ready()

    def _read_info(self) -> dict:
        if getattr(self, "_deferred", False):
            return {}
        proc = run_cli("info", "--store", self.store, "--data-dir", str(self.data_dir), "--json", check=True)
        info = json.loads(proc.stdout)
        # The hub's host name is the name every node answers to (a load balancer's, in a
        # deployment); here each node has an address of its own, where the test reaches it.
        host = info["hub"]["hostName"]
        assert host in self.peers, info
        info["hub"]["hostName"] = self.address
        info["hub"]["connectionString"] = info["hub"]["connectionString"].replace(
            f"HostName={host};", f"HostName={self.address};"
        )
        assert Path(info["tls"]["caCertificate"]).is_file(), info
        return info


@contextlib.contextmanager
def cluster(database: str, nats_url: str, addresses: list[str], prefix: str = "ironhub-cluster-",
            extra_args: list[str] | None = None):
    """Nodes on `addresses` (already moved into the test net) started together over one database
    and one nats-server (or a list of them, `nats_url` separated by commas), with `extra_args`
    for `serve`; each has its own data directory. Yields the nodes, killed at the end."""
    with server_workdir(prefix) as workdir:
        nodes: list[Node] = []
        for i, address in enumerate(addresses, start=1):
            node_dir = workdir / f"node-{i}"
            node_dir.mkdir()
            args = ["--store", database, "--nats", nats_url, "--node-id", f"node-{i}", *(extra_args or [])]
            nodes.append(Node(address, node_dir, database, args, addresses))
        try:
            # All at once: the first to reach the empty database creates the schema and the
            # hub's identity, the others must take theirs from it.
            for node in nodes:
                node.launch()
            for node in nodes:
                node.wait_started()
        except BaseException:
            for node in nodes:
                node._kill()
            raise
        with serving(nodes):
            yield nodes
