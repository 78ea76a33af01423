"""Where people go wrong, the server and the CLI say what happened and what to do:

- a second `ironhub serve` on a data directory in use refuses to start, naming the other
  process, and `ironhub info` keeps working;
- `ironhub dps linked-hub create` refuses a hub whose certificate the server does not trust
  (naming `--trust-ca`) and one that rejects the connection string's key; it links a trusted
  one, and links one that does not answer with a warning;
- a server whose `--hostname` is an IP address logs no TLS warning when clients send that IP
  as their server name (mosquitto does);
- `ironhub info` on a directory without data says which directory to pass;
- a server that may not bind 443 as an ordinary user offers what works for each client.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import tempfile
from pathlib import Path

import pytest

from conftest import IronHub, ironhub_bin, require_tool, run_cli, test_address

IRONHUB_ADDRESS = "127.0.0.61"
OTHER_ADDRESS = "127.0.0.62"
SPARE_ADDRESS = "127.0.0.63"


@pytest.fixture(scope="module")
def other_hub():
    """A second server, whose CA the module's server does not trust."""
    workdir = Path(tempfile.mkdtemp(prefix="ironhub-operator-errors-"))
    server = IronHub(test_address(OTHER_ADDRESS), workdir)
    server.start()
    yield server
    server._kill(signal.SIGKILL)
    shutil.rmtree(workdir, ignore_errors=True)


def test_second_server_on_a_data_directory_in_use_refuses_to_start(hub):
    spare = test_address(SPARE_ADDRESS)
    second = subprocess.run(
        [ironhub_bin(), "serve", "--data-dir", str(hub.data_dir), "--hostname", spare,
         "--https-listen", f"{spare}:443", "--mqtt-listen", f"{spare}:8883",
         "--amqp-listen", f"{spare}:5671"],
        capture_output=True, text=True, timeout=30, stdin=subprocess.DEVNULL,
    )
    assert second.returncode == 1
    errors = [line for line in second.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, second.stderr
    assert f"pid {hub.proc.pid}" in errors[0] and "--data-dir" in errors[0], errors[0]
    assert second.stdout == ""
    # Read-only commands still work, and the running server still answers for its own name.
    info = json.loads(run_cli("info", "--data-dir", str(hub.data_dir), "--json", check=True).stdout)
    assert info["hub"]["hostName"] == hub.hostname
    run_cli("hub", "device-identity", "create", "-d", "after-refusal", "--data-dir", str(hub.data_dir), check=True)


def test_linked_hub_create_checks_the_hub(hub, other_hub):
    d = ["--data-dir", str(hub.data_dir)]
    untrusted = run_cli("dps", "linked-hub", "create", "--connection-string", other_hub.connection_string, *d)
    assert untrusted.returncode != 0
    assert "--trust-ca" in untrusted.stderr and "not trusted" in untrusted.stderr, untrusted.stderr
    assert "SSL_CERT_FILE" not in untrusted.stderr, untrusted.stderr

    # Trusted now (restarted with --trust-ca), but with a wrong key: refused, naming the fix.
    hub.extra_args = ["--trust-ca", other_hub.ca_file]
    hub.restart()
    parts = other_hub.connection_string_parts()
    wrong = other_hub.connection_string.replace(parts["SharedAccessKey"], "d3Jvbmcga2V5IHdyb25nIGtleSB3cm9uZyBrZXk=")
    rejected = run_cli("dps", "linked-hub", "create", "--connection-string", wrong, *d)
    assert rejected.returncode != 0 and "iothubowner" in rejected.stderr, rejected.stderr

    linked = run_cli("dps", "linked-hub", "create", "--connection-string", other_hub.connection_string, *d, check=True)
    assert json.loads(linked.stdout)["name"] == other_hub.hostname
    assert json.loads(linked.stdout)["latencyMs"] >= 0 and "warning" not in linked.stderr, linked.stderr

    # A hub that does not answer (nothing listens there) may come up later: linked, with a warning.
    down = test_address(SPARE_ADDRESS)
    down_cs = other_hub.connection_string.replace(f"HostName={other_hub.hostname}", f"HostName={down}")
    unreached = run_cli("dps", "linked-hub", "create", "--connection-string", down_cs, *d, check=True)
    assert "latencyMs" not in json.loads(unreached.stdout)
    assert f"could not reach the hub '{down}'" in unreached.stderr, unreached.stderr
    names = [h["name"] for h in json.loads(run_cli("dps", "linked-hub", "list", *d, check=True).stdout)]
    assert other_hub.hostname in names
    assert "Illegal SNI" not in Path(hub.stderr_path).read_text()


def test_no_sni_warning_for_an_ip_host_name(hub):
    require_tool("mosquitto_pub")
    d = ["--data-dir", str(hub.data_dir)]
    run_cli("hub", "device-identity", "create", "-d", "sni-dev", *d, check=True)
    token = json.loads(run_cli("hub", "generate-sas-token", "-d", "sni-dev", *d, check=True).stdout)["sas"]
    sent = subprocess.run(
        ["mosquitto_pub", "-h", hub.address, "-p", "8883", "--cafile", hub.ca_file, "-V", "mqttv311",
         "-i", "sni-dev", "-u", f"{hub.hostname}/sni-dev/?api-version=2021-04-12", "-P", token,
         "-t", "devices/sni-dev/messages/events/", "-q", "1", "-m", "hello"],
        capture_output=True, text=True, timeout=30)
    assert sent.returncode == 0, sent.stderr
    log = Path(hub.stderr_path).read_text()
    assert "Illegal SNI" not in log and "SNI" not in log, log[-2000:]


def test_info_without_data_names_the_directory_to_pass(tmp_path):
    out = run_cli("info", "--data-dir", str(tmp_path))
    assert out.returncode != 0
    assert "--data-dir the server runs with" in out.stderr, out.stderr
    assert "once first" not in out.stderr


def test_unprivileged_bind_offers_setcap_and_another_port():
    if os.geteuid() != 0 or not shutil.which("setpriv"):
        pytest.skip("needs root (to drop to an ordinary user) and setpriv")
    tmp_path = Path(tempfile.mkdtemp(prefix="ironhub-unprivileged-"))
    binary = tmp_path / "ironhub"
    shutil.copy(ironhub_bin(), binary)
    os.chmod(tmp_path, 0o777)
    spare = test_address(SPARE_ADDRESS)
    out = subprocess.run(
        ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "--inh-caps=-all",
         str(binary), "serve", "--data-dir", str(tmp_path / "data"), "--hostname", spare,
         "--https-listen", f"{spare}:443", "--mqtt-listen", f"{spare}:8883",
         "--amqp-listen", f"{spare}:5671"],
        capture_output=True, text=True, timeout=30, stdin=subprocess.DEVNULL,
    )
    shutil.rmtree(tmp_path, ignore_errors=True)
    assert out.returncode == 1, out.stderr
    assert "setcap cap_net_bind_service=+ep" in out.stderr and str(binary) in out.stderr, out.stderr
    assert "--https-listen 127.0.0.1:8443" in out.stderr, out.stderr
