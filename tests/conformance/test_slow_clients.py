"""Slow and silent HTTPS clients (issue 15): a server started with short
`--http-header-read-timeout-seconds` and `--http-body-read-timeout-seconds` closes a client
that stops in the middle of its request's headers when the header timeout runs out, answers
one that declares a body and stops after a byte 408 and closes it when the body timeout runs
out (the hub's REST API and DPS's device API alike), and refuses a request it cannot
authenticate, or whose declared body is over the route's limit, at once without reading its
body. A few hundred such slow clients held open do not stop a registry call or a device's
telemetry over HTTPS from being served."""

from __future__ import annotations

import json
import socket
import ssl
import time

import pytest

from conftest import closed_by_server
from dps_helpers import dps_info, sas

IRONHUB_ADDRESS = "127.0.0.75"
HEADER_TIMEOUT_S = 4
BODY_TIMEOUT_S = 6
# Longer than a refusal "at once" takes, shorter than either timeout.
AT_ONCE_S = 2.0
# Slack for the server's timer and a loaded machine.
SLACK_S = 5.0
SLOW_CLIENTS = 300


def ironhub_args(workdir) -> list[str]:
    return [
        "--http-header-read-timeout-seconds", str(HEADER_TIMEOUT_S),
        "--http-body-read-timeout-seconds", str(BODY_TIMEOUT_S),
    ]


def owner_token(hub) -> str:
    parts = hub.connection_string_parts()
    return sas(hub.hostname, parts["SharedAccessKey"], parts["SharedAccessKeyName"])


def connect(hub) -> ssl.SSLSocket:
    ctx = ssl.create_default_context(cafile=hub.ca_file)
    tcp = socket.create_connection((hub.address, 443), timeout=30)
    return ctx.wrap_socket(tcp, server_hostname=hub.hostname)


def head(method: str, path: str, declared: int, authorization: str | None = None) -> bytes:
    lines = [f"{method} {path} HTTP/1.1", "Host: ironhub", "Content-Type: application/json",
             f"Content-Length: {declared}"]
    if authorization:
        lines.append(f"Authorization: {authorization}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def response_of(sock: ssl.SSLSocket, within: float) -> tuple[int, bytes]:
    """The status and what came of the response within `within` seconds."""
    sock.settimeout(within)
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(4096)
        assert chunk, f"closed without an answer: {data!r}"
        data += chunk
    return int(data.split(b" ", 2)[1]), data


def register_path(hub, rid: str) -> str:
    return f"/{dps_info(hub)['idScope']}/registrations/{rid}/register?api-version=2021-06-01"


def test_a_body_that_stops_is_answered_408_and_closed_when_the_body_timeout_runs_out(hub):
    cases = [
        head("PUT", "/devices/slow-body?api-version=2021-04-12", 100_000, owner_token(hub)),
        # Without credentials DPS reads the body (it may carry a TPM's keys), within the timeout.
        head("PUT", register_path(hub, "slow-body"), 50_000),
    ]
    for request in cases:
        with connect(hub) as s:
            started = time.monotonic()
            s.sendall(request + b"{")
            status, answer = response_of(s, BODY_TIMEOUT_S + SLACK_S)
            waited = time.monotonic() - started
            assert status == 408, answer
            assert waited >= BODY_TIMEOUT_S - 0.5, f"answered after {waited:.1f} s"
            assert closed_by_server(s, SLACK_S), "the connection is closed after the 408"
    with pytest.raises(Exception):
        hub.registry_manager().get_device("slow-body")


def test_a_head_that_stops_is_closed_when_the_header_timeout_runs_out(hub):
    with connect(hub) as s:
        started = time.monotonic()
        s.sendall(b"PUT /devices/slow-head HTTP/1.1\r\nHost: ironhub\r\n")
        assert closed_by_server(s, HEADER_TIMEOUT_S + SLACK_S), "the silent client is closed"
        waited = time.monotonic() - started
        assert waited >= HEADER_TIMEOUT_S - 0.5, f"closed after {waited:.1f} s"


def test_requests_that_cannot_authenticate_or_declare_too_much_are_refused_at_once(hub):
    """Answered at once, without the body. A body declared over 1 MiB is not waited for (the
    connection is closed at once); a smaller one may still come and is read, so a client that
    writes its whole body before reading gets the answer: its connection lasts at most the
    body read timeout."""
    scope = dps_info(hub)["idScope"]
    bad_device_token = sas(f"{scope}/registrations/slow-auth", "AAAA" * 11, "registration")
    cases = [
        # No credentials for the hub's REST API.
        (head("PUT", "/devices/slow-auth?api-version=2021-04-12", 10_000_000), 401, AT_ONCE_S),
        (head("PUT", "/devices/slow-auth?api-version=2021-04-12", 400_000), 401, BODY_TIMEOUT_S + SLACK_S),
        # A DPS registration with a token that does not verify.
        (head("PUT", register_path(hub, "slow-auth"), 10_000_000, bad_device_token), 401, AT_ONCE_S),
        (head("PUT", register_path(hub, "slow-auth"), 90_000, bad_device_token), 401, BODY_TIMEOUT_S + SLACK_S),
        # A DPS registration without credentials declaring more than DPS accepts.
        (head("PUT", register_path(hub, "slow-auth"), 10_000_000), 413, AT_ONCE_S),
        # An authorized call declaring more than the route accepts.
        (head("PUT", "/devices/slow-auth?api-version=2021-04-12", 10_000_000, owner_token(hub)), 413, AT_ONCE_S),
    ]
    for request, expected, closed_within in cases:
        with connect(hub) as s:
            s.sendall(request)
            status, answer = response_of(s, AT_ONCE_S)
            assert status == expected, answer
            assert b"application/json" in answer.lower(), answer
            assert closed_by_server(s, closed_within), f"closed within {closed_within} s"


def test_an_answer_given_before_the_body_still_reaches_a_client_that_sends_it_whole(hub):
    """A client that writes its whole body before it reads (as `requests` does) gets the 401,
    and its connection carries the next request."""
    import requests

    body = b'{"deviceId": "slow-whole", "tags": "' + b"x" * 300_000 + b'"}'
    with requests.Session() as session:
        for _ in range(2):
            r = session.put(f"https://{hub.hostname}/devices/slow-whole?api-version=2021-04-12",
                            data=body, headers={"Content-Type": "application/json"},
                            verify=hub.ca_file, timeout=30)
            assert r.status_code == 401, r.text
            assert r.headers["iothub-errorcode"] == "IotHubUnauthorizedAccess"


def test_hundreds_of_slow_clients_do_not_stop_real_calls(hub, rm):
    import requests

    key = rm.create_device_with_sas("slow-neighbour", None, None, "enabled") \
        .authentication.symmetric_key.primary_key
    request = head("PUT", register_path(hub, "slow-many"), 50_000) + b"{"
    slow = []
    try:
        for _ in range(SLOW_CLIENTS):
            s = connect(hub)
            s.sendall(request)
            slow.append((s, time.monotonic()))

        # A registry call and a device's telemetry over HTTPS are served as usual.
        started = time.monotonic()
        assert rm.get_device("slow-neighbour").device_id == "slow-neighbour"
        r = requests.post(
            f"https://{hub.address}/devices/slow-neighbour/messages/events",
            params={"api-version": "2020-09-30"}, data=json.dumps({"t": 1}),
            headers={"Authorization": sas(f"{hub.hostname}/devices/slow-neighbour", key),
                     "Content-Type": "application/json"},
            verify=hub.ca_file, timeout=30)
        assert r.status_code == 204, r.text
        served = time.monotonic() - started
        assert served < AT_ONCE_S * 2, f"real calls took {served:.1f} s beside the slow clients"

        # Every slow client is answered and closed when its body timeout runs out.
        for s, since in slow:
            left = max(BODY_TIMEOUT_S + SLACK_S - (time.monotonic() - since), 0.1)
            status, answer = response_of(s, left)
            assert status == 408, answer
    finally:
        for s, _ in slow:
            s.close()
