"""What the routing modules share: the hub's REST API with the owner policy's token, the
routing document written compare-and-swap, and a stream endpoint's events read back."""

from __future__ import annotations

import json

import requests

from dps_helpers import sas

API = "2021-04-12"
TIMEOUT_S = 60


def owner_auth(hub) -> dict:
    parts = hub.connection_string_parts()
    return {"Authorization": sas(hub.hostname, parts["SharedAccessKey"], parts["SharedAccessKeyName"])}


def rest(hub, method: str, path: str, **kwargs) -> requests.Response:
    headers = {**owner_auth(hub), **kwargs.pop("headers", {})}
    return requests.request(method, f"https://{hub.address}{path}", params={"api-version": API},
                            headers=headers, timeout=TIMEOUT_S, verify=hub.ca_file, **kwargs)


def put_routing(hub, doc: dict) -> requests.Response:
    """Replaces the routing document, conditioned on the etag just read."""
    etag = rest(hub, "GET", "/routing").headers.get("ETag")
    return rest(hub, "PUT", "/routing", json=doc, headers={"If-Match": etag} if etag else {})


def stream_response(hub, params: dict, timeout: float = TIMEOUT_S) -> requests.Response:
    """The REST event stream of `$Default` with `params` (the caller closes it)."""
    return requests.get(f"https://{hub.address}/events/consumergroups/$Default/stream",
                        params={"api-version": API, **params}, headers=owner_auth(hub), stream=True,
                        timeout=timeout, verify=hub.ca_file)


def stream_events(hub, endpoint: str | None, device_id: str | None = None) -> list[dict]:
    """Every event of an endpoint (the built-in one without `endpoint`) through the REST event
    stream, from the start, until a second passes without one."""
    params = {"from": "start", "timeout": "1"}
    if endpoint:
        params["endpoint"] = endpoint
    if device_id:
        params["deviceId"] = device_id
    with stream_response(hub, params) as r:
        assert r.status_code == 200, r.text
        return [json.loads(line) for line in r.iter_lines() if line]
