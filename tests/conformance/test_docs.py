"""The README and the guides under docs/ work as written: their runnable blocks are run, in
order, against a real server on a loopback address.

Which blocks run is marked in the Markdown itself, by the fence's info string:

- ```` ```sh test ```` — shell commands. All blocks of a page run in order in one `bash`
  (`set -euo pipefail`), so variables and files carry over from block to block;
- ```` ```python test ```` / ```` ```js test ```` — run with `python3` / `node` (the suite's
  venv and `tests/conformance/node/node_modules`), in that same order and working directory;
- ```` ```sh server ```` — the page's command that starts the server (one line). The test runs
  it in the background with the freshly built binary in place of `cargo run --release -p
  ironhub --` (or `ironhub`), adding `--hostname ADDR --https-listen ADDR:443 --mqtt-listen
  ADDR:8883`. A page with runnable blocks and no server block gets `ironhub serve`.

Every other block (```` ```sh ````, ```` ```text ````, …) is prose and is not run.

The substitution: in runnable blocks the word `localhost` (the hub's host name on a fresh
machine) becomes the test's address (127.0.0.64, moved by `IRONHUB_TEST_NET`). Each page runs
in a fresh empty directory, where the server keeps `./ironhub-data`, with `ironhub` (the built
binary) first on `PATH`.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

from conftest import have_tool, ironhub_bin, test_address

ROOT = Path(__file__).resolve().parents[2]
ADDRESS = test_address("127.0.0.64")
PAGE_TIMEOUT_S = 100  # under pytest-timeout's 120 s
READY_TIMEOUT_S = 30
FENCE = re.compile(r"^(`{3,})\s*([\w-]*)((?:[ \t]+[\w-]+)*)\s*$")
SERVE_PREFIX = re.compile(r"^(cargo run --release -p ironhub --|ironhub)\s+serve\b")
# Tools a page may call; in CI a missing one fails the page (scripts/test installs them).
TOOLS = ["mosquitto_pub", "mosquitto_sub", "openssl", "node", "curl"]


def pages() -> list[Path]:
    """The README and every page under docs/ with runnable blocks (an index or a protocol note
    without any is not a test)."""
    found = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
    return [p for p in found if any("test" in marks for _, _, marks, _ in blocks(p))]


def blocks(page: Path) -> list[tuple[int, str, set[str], str]]:
    """(line, language, marks, text) of every fenced block of a Markdown page."""
    found, lines, i = [], page.read_text().splitlines(), 0
    while i < len(lines):
        m = FENCE.match(lines[i])
        if not m or not m.group(2):
            i += 1
            continue
        fence, lang, marks, start = m.group(1), m.group(2), set(m.group(3).split()), i + 1
        i += 1
        body = []
        while i < len(lines) and not lines[i].startswith(fence):
            body.append(lines[i])
            i += 1
        i += 1
        found.append((start, lang, marks, "\n".join(body) + "\n"))
    return found


def localize(text: str) -> str:
    return re.sub(r"\blocalhost\b", ADDRESS, text)


def script_for(page: Path) -> tuple[list[str] | None, str]:
    """The page's server command (or None) and its runnable blocks as one bash script."""
    server, parts = None, ["set -euo pipefail\n"]
    rel = page.relative_to(ROOT)
    for line, lang, marks, text in blocks(page):
        if "server" in marks:
            command = text.strip()
            assert "\n" not in command and SERVE_PREFIX.match(command), f"{rel}:{line}: one serve command"
            server = SERVE_PREFIX.sub("serve", command).split()[1:]
            continue
        if "test" not in marks:
            continue
        parts.append(f"echo '===== {rel}:{line} =====' >&2\n")
        body = localize(text)
        if lang in ("sh", "bash", "shell", "console"):
            parts.append(body)
        elif lang == "python":
            parts.append(f"python3 - <<'IRONHUB_DOC_BLOCK'\n{body}IRONHUB_DOC_BLOCK\n")
        elif lang in ("js", "javascript"):
            parts.append(f"node - <<'IRONHUB_DOC_BLOCK'\n{body}IRONHUB_DOC_BLOCK\n")
        else:
            pytest.fail(f"{rel}:{line}: runnable blocks are sh, python or js, not {lang}")
    return server, "".join(parts) if len(parts) > 1 else ""


def _listening() -> bool:
    try:
        with socket.create_connection((ADDRESS, 443), timeout=1.0):
            return True
    except OSError:
        return False


def _wait_ready(proc: subprocess.Popen, workdir: Path, log: Path) -> None:
    deadline = time.monotonic() + READY_TIMEOUT_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"the page's server exited with {proc.returncode}:\n{log.read_text()}", pytrace=False)
        if _listening():
            return
        time.sleep(0.05)
    pytest.fail(f"the page's server did not listen on {ADDRESS}:443:\n{log.read_text()}", pytrace=False)


def test_every_page_has_a_known_shape():
    """The README keeps its two set-up commands, and has runnable blocks at all."""
    readme = blocks(ROOT / "README.md")
    assert any("server" in marks for _, _, marks, _ in readme)
    assert any(text.strip() == "scripts/test" for _, _, _, text in readme)
    assert sum("test" in marks for _, _, marks, _ in readme) >= 3


@pytest.mark.parametrize("page", pages(), ids=lambda p: str(p.relative_to(ROOT)))
def test_page_runs_as_written(page: Path):
    server_args, script = script_for(page)
    if not script:
        pytest.skip("no runnable blocks")
    for tool in TOOLS:
        if re.search(rf"(^|[\s|(]){re.escape(tool)}\b", script, re.M) and not have_tool(tool):
            pytest.skip(f"{tool} is not installed")
    if _listening():
        pytest.fail(f"something already listens on {ADDRESS}:443", pytrace=False)
    workdir = Path(tempfile.mkdtemp(prefix="ironhub-docs-"))
    bindir = workdir / ".bin"
    bindir.mkdir()
    (bindir / "ironhub").symlink_to(ironhub_bin())
    venv = ROOT / "tests" / "conformance" / ".venv" / "bin"
    env = dict(os.environ)
    env["PATH"] = os.pathsep.join([str(bindir), str(venv), env.get("PATH", "")])
    env["NODE_PATH"] = str(ROOT / "tests" / "conformance" / "node" / "node_modules")
    for var in ("REQUESTS_CA_BUNDLE", "IRONHUB_DATA_DIR", "IRONHUB_CONNECTION_STRING", "IRONHUB_LOG"):
        env.pop(var, None)
    log = workdir / "server.log"
    args = [ironhub_bin(), *(server_args or ["serve"]),
            "--hostname", ADDRESS, "--https-listen", f"{ADDRESS}:443", "--mqtt-listen", f"{ADDRESS}:8883"]
    with open(log, "w") as out:
        server = subprocess.Popen(args, cwd=workdir, env=env, stdout=out, stderr=subprocess.STDOUT,
                                  stdin=subprocess.DEVNULL, start_new_session=True)
    try:
        _wait_ready(server, workdir, log)
        # Output to files, not pipes: a background job a page forgot would hold a pipe open.
        out_path, err_path = workdir / "page.stdout", workdir / "page.stderr"
        with open(out_path, "w") as out, open(err_path, "w") as err:
            page_proc = subprocess.Popen(["bash", "-c", script], cwd=workdir, env=env, stdout=out, stderr=err,
                                         stdin=subprocess.DEVNULL, start_new_session=True)
        try:
            code = page_proc.wait(timeout=PAGE_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            code = f"none: killed after {PAGE_TIMEOUT_S} s"
        finally:
            try:
                os.killpg(page_proc.pid, signal.SIGKILL)  # and whatever it left in the background
            except ProcessLookupError:
                pass
            page_proc.wait(timeout=10)
        if code != 0:
            pytest.fail(
                f"{page.relative_to(ROOT)}: a runnable block failed (exit {code})\n"
                f"--- stderr (the last ===== line names the block) ---\n{err_path.read_text()[-6000:]}\n"
                f"--- stdout ---\n{out_path.read_text()[-3000:]}\n--- server ---\n{log.read_text()[-3000:]}",
                pytrace=False,
            )
    finally:
        try:
            os.killpg(server.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        server.wait(timeout=10)
        shutil.rmtree(workdir, ignore_errors=True)
