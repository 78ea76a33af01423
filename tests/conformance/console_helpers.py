"""What the console's conformance modules share: the headless Chromium they drive through a
Playwright script under `node/` (`drive` runs one and answers its `{"wait": ...}` lines),
direct HTTPS requests to the console from a chosen client address, the CSRF token of a page,
a policy's connection string, and a DPS policy added to a stopped server's store."""

from __future__ import annotations

import http.client
import json
import os
import re
import sqlite3
import ssl
import subprocess
import urllib.parse
from typing import Callable

from conftest import NODE_DIR, require_tool, run_cli

CHROMIUM = "/usr/bin/chromium"
WAIT_S = 20


def drive(script: str, args: list[str], env: dict[str, str],
          answer: Callable[[str, dict], dict | None] = lambda step, msg: None) -> dict:
    """Runs `node/<script>` with `args` and `env` (and CHROMIUM); at each `{"wait": step}` line
    it prints, calls `answer(step, msg)` and sends back what it returns (`{}` for None). Returns
    the script's result object, failing with its stderr if it gave none or an error."""
    require_tool("node")
    require_tool(CHROMIUM.rsplit("/", 1)[1])
    proc = subprocess.Popen(
        ["node", str(NODE_DIR / script), *args], cwd=NODE_DIR,
        env=dict(os.environ, CHROMIUM=CHROMIUM, **env), stdin=subprocess.PIPE,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    result = None
    try:
        for line in proc.stdout:
            if not line.startswith("{"):
                continue
            msg = json.loads(line)
            step = msg.get("wait")
            if step is None:
                result = msg
                break
            proc.stdin.write(json.dumps(answer(step, msg) or {}) + "\n")
            proc.stdin.flush()
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert result is not None, f"{script} gave no result\n{proc.stderr.read()[-6000:]}"
    assert "error" not in result, f"{result}\n{proc.stderr.read()[-6000:]}"
    return result


def policy_connection_string(hub, policy: str) -> str:
    """The hub's connection string for its shared access policy `policy`."""
    out = run_cli("hub", "connection-string", "show", "--policy-name", policy, "--data-dir", str(hub.data_dir), check=True)
    return json.loads(out.stdout)["connectionString"]


def console_request(hub, source: str, method: str, path: str, form: dict | None = None, cookie: str | None = None):
    """One HTTPS request to the console from the client address `source`: (status, headers, body)."""
    context = ssl.create_default_context(cafile=hub.ca_file)
    conn = http.client.HTTPSConnection(hub.hostname, 443, context=context, source_address=(source, 0), timeout=WAIT_S)
    headers = {}
    body = None
    if form is not None:
        body = urllib.parse.urlencode(form)
        headers["Content-Type"] = "application/x-www-form-urlencoded"
    if cookie:
        headers["Cookie"] = cookie
    try:
        conn.request(method, path, body=body, headers=headers)
        response = conn.getresponse()
        return response.status, response.headers, response.read().decode()
    finally:
        conn.close()


def csrf_of(page: str) -> str:
    """The CSRF token a console page's forms carry."""
    match = re.search(r'name="csrf" value="([^"]+)"', page)
    assert match, page[:500]
    return match.group(1)


def add_dps_policy(hub, name: str, key: str, rights: str) -> None:
    """Adds a DPS shared access policy in the stopped server's store (ironhub has no command
    for DPS policies yet; Azure's is `az iot dps policy create`)."""
    db = sqlite3.connect(hub.data_dir / "ironhub.db")
    try:
        (text,) = db.execute("SELECT value FROM meta WHERE key = 'dps'").fetchone()
        settings = json.loads(text)
        owner = settings["policies"][0]
        settings["policies"].append({**owner, "keyName": name, "primaryKey": key, "secondaryKey": key, "rights": rights})
        db.execute("UPDATE meta SET value = ? WHERE key = 'dps'", (json.dumps(settings),))
        db.commit()
    finally:
        db.close()
