"""The web console (`/console`), driven in headless Chromium by `node/console.js`
(playwright-core), while the device side is the real Python device SDK over MQTT: sign-in with
the owner connection string, a device created through the form, its telemetry shown live, a
cloud-to-device message with `Topic=/power`, a desired-property edit and an ETag conflict, a
direct method; a bad device id, a post without the CSRF token, a read-only policy's page and
its forged posts; failed sign-ins limited per client address; the CA certificate download;
screenshots at a phone's and a desktop's width, with no horizontal overflow.
"""

from __future__ import annotations

import http.client
import json
import queue
import re
import ssl

import pytest
from azure.iot.device import IoTHubDeviceClient, Message, MethodResponse
from msrest.exceptions import HttpOperationError

from conftest import test_address
from console_helpers import CHROMIUM, WAIT_S, console_request, csrf_of, drive, policy_connection_string  # noqa: F401 (others import them from here)
from dps_helpers import make_root, make_signed, sas
from routing_helpers import put_routing

IRONHUB_ADDRESS = "127.0.0.76"
# Client addresses the sign-in limit tests send from (loopback takes any 127/8 source).
GUESSER_ADDRESS = test_address("127.0.0.69")
BYSTANDER_ADDRESS = test_address("127.0.0.70")


class Device:
    """The device the console created, connected with the Python SDK; it answers `reboot` by
    echoing the payload and collects its C2D messages and desired patches."""

    def __init__(self, hub, rm, device_id: str):
        key = rm.get_device(device_id).authentication.symmetric_key.primary_key
        cs = f"HostName={hub.hostname};DeviceId={device_id};SharedAccessKey={key}"
        self.client = IoTHubDeviceClient.create_from_connection_string(cs, server_verification_cert=open(hub.ca_file).read())
        self.messages: queue.Queue = queue.Queue()
        self.patches: queue.Queue = queue.Queue()
        self.client.on_message_received = self.messages.put
        self.client.on_twin_desired_properties_patch_received = self.patches.put
        self.client.on_method_request_received = self.answer
        self.client.connect()

    def answer(self, request):
        self.client.send_method_response(MethodResponse.create_from_method_request(request, 200, {"echo": request.payload, "name": request.name}))

    def close(self):
        self.client.shutdown()


def test_console_end_to_end(hub, rm, tmp_path):
    env = {
        "IRONHUB_CONNECTION_STRING": hub.connection_string,
        "IRONHUB_READ_CONNECTION_STRING": policy_connection_string(hub, "registryRead"),
    }
    device = None

    def answer(step, msg):
        nonlocal device
        if step == "created":
            device = Device(hub, rm, msg["deviceId"])
        elif step == "send-telemetry":
            device.client.send_message(Message("hello-console"))
        elif step == "send-hub-telemetry":
            device.client.send_message(Message("hello-hub"))
        elif step == "c2d-sent":
            m = device.messages.get(timeout=WAIT_S)
            assert m.data == b"ON"
            assert m.custom_properties.get("Topic") == "/power", m.custom_properties
        elif step == "twin-saved":
            patch = device.patches.get(timeout=WAIT_S)
            assert patch.get("color") == "red", patch

    try:
        result = drive("console.js", [f"https://{hub.hostname}", str(tmp_path)], env, answer)
    finally:
        if device is not None:
            device.close()

    # Without a session: a redirect to sign-in, nothing created.
    assert result["anonymousPost"] == 303
    assert result["badKeyShown"]
    assert result["overviewHost"] == hub.hostname
    assert result["keyMasked"]
    assert result["cookie"]["httpOnly"] and result["cookie"]["secure"] and result["cookie"]["sameSite"] == "Strict"
    assert result["cookie"]["expires"] > 0
    assert result["headers"]["xfo"] == "DENY"
    assert "frame-ancestors 'none'" in result["headers"]["csp"]
    assert result["noCsrfStatus"] == 403
    assert "bad id!" in result["badIdMessage"] or "invalid" in result["badIdMessage"].lower(), result["badIdMessage"]
    assert result["telemetry"].endswith("hello-console") or "hello-console" in result["telemetry"]
    assert "queued" in result["c2dNotice"]
    assert "saved" in result["twinNotice"]
    assert result["conflictStatus"] == 412
    assert "ETag" in result["conflictNotice"]
    assert result["methodStatus"] == "200"
    assert result["methodResult"] == {"echo": {"delay": 1}, "name": "reboot"}
    assert all(result["fits"].values()), result["fits"]
    assert "console-dev: hello-hub" in result["hubTelemetry"], result["hubTelemetry"]
    assert len(result["fits"]) == 14
    assert result["moduleTwinForms"] == 1
    for name in ("overview", "devices", "device", "module", "certificates", "telemetry", "routes"):
        for width in ("phone", "desktop"):
            assert (tmp_path / f"{name}-{width}.png").stat().st_size > 0
    assert result["signedOut"]
    # The read-only policy reads but sees no write controls; its forged posts are refused.
    assert result["readOnlyControls"] == 0
    assert result["readOnlyTwinShown"] == 1
    assert result["readOnlyCreate"] == 0
    assert result["readOnlyListed"] == 1
    assert result["forgedDeleteStatus"] == 401
    assert result["forgedCreateStatus"] == 401

    # What the refused requests did not do, and what the accepted ones did.
    for refused in ("anon-dev", "csrf-dev", "bad id!", "forged-dev"):
        with pytest.raises(HttpOperationError):
            rm.get_device(refused)
    assert rm.get_device("console-dev").status == "enabled"
    assert rm.get_twin("console-dev").properties.desired["color"] == "red"
    assert rm.get_module("console-dev", "console-mod").module_id == "console-mod"


def test_failed_sign_ins_are_limited_per_address_and_the_ca_downloads(hub, rm, tmp_path):
    owner = hub.connection_string_parts()
    wrong = {"policy": "iothubowner", "key": "d3Jvbmcga2V5IHdyb25nIGtleQ=="}
    right = {"policy": "iothubowner", "key": owner["SharedAccessKey"]}
    # Wrong keys from one address: refused one by one, then refused outright with 429. Five
    # failures fall in one minute unless a minute ends among them, so the refusal comes
    # after five to nine of them.
    failures = 0
    while True:
        status, headers, body = console_request(hub, GUESSER_ADDRESS, "POST", "/console/signin", wrong)
        if status == 429:
            break
        assert status == 401, (status, body[:500])
        failures += 1
        assert failures < 10, "no refusal after nine failed sign-ins"
    assert failures >= 5, f"refused after only {failures} failures"
    assert 1 <= int(headers["Retry-After"]) <= 60, headers
    assert "Too many failed sign-ins" in body
    # The right key from that address is refused too (the key is not even checked) ...
    status, headers, body = console_request(hub, GUESSER_ADDRESS, "POST", "/console/signin", right)
    assert status == 429 and "Retry-After" in headers
    # ... while another address signs in.
    status, headers, body = console_request(hub, BYSTANDER_ADDRESS, "POST", "/console/signin", right)
    assert status == 303, (status, body[:500])
    cookie = headers["Set-Cookie"].split(";", 1)[0]

    # The overview links the CA certificate, and it downloads as the server's ca.pem.
    status, _, body = console_request(hub, BYSTANDER_ADDRESS, "GET", "/console", cookie=cookie)
    assert status == 200 and 'href="/console/ca.pem"' in body
    status, headers, body = console_request(hub, BYSTANDER_ADDRESS, "GET", "/console/ca.pem", cookie=cookie)
    assert status == 200
    assert headers["Content-Type"] == "application/x-pem-file"
    assert "attachment" in headers["Content-Disposition"]
    assert body == open(hub.ca_file).read()
    # Not without a session.
    status, headers, _ = console_request(hub, BYSTANDER_ADDRESS, "GET", "/console/ca.pem")
    assert status == 303 and headers["Location"] == "/console/signin"

    # X.509 devices from the create form: self-signed with both thumbprints, CA-signed; a
    # self-signed one without thumbprints is refused and not created.
    _, _, page = console_request(hub, BYSTANDER_ADDRESS, "GET", "/console/devices", cookie=cookie)
    csrf = csrf_of(page)
    primary, secondary = "A" * 40, "B" * 40
    create = {"csrf": csrf, "device_id": "x509-self", "auth": "selfSigned", "primary_thumbprint": primary, "secondary_thumbprint": secondary}
    status, headers, body = console_request(hub, BYSTANDER_ADDRESS, "POST", "/console/devices", create, cookie=cookie)
    assert status == 303 and headers["Location"] == "/console/devices/x509-self", (status, body[:500])
    auth = rm.get_device("x509-self").authentication
    assert auth.type == "selfSigned"
    assert (auth.x509_thumbprint.primary_thumbprint, auth.x509_thumbprint.secondary_thumbprint) == (primary, secondary)
    create = {"csrf": csrf, "device_id": "x509-ca", "auth": "certificateAuthority"}
    status, _, body = console_request(hub, BYSTANDER_ADDRESS, "POST", "/console/devices", create, cookie=cookie)
    assert status == 303, (status, body[:500])
    assert rm.get_device("x509-ca").authentication.type == "certificateAuthority"
    create = {"csrf": csrf, "device_id": "x509-none", "auth": "selfSigned"}
    status, _, body = console_request(hub, BYSTANDER_ADDRESS, "POST", "/console/devices", create, cookie=cookie)
    assert status == 400 and "thumbprint" in body.lower(), (status, body[:800])
    with pytest.raises(HttpOperationError):
        rm.get_device("x509-none")

    # Modules: created from the device page, the module twin edited on the condition of its
    # ETag, a read-only policy's view without controls and its forged post refused, deletion.
    _, _, page = console_request(hub, BYSTANDER_ADDRESS, "GET", "/console/devices/x509-self", cookie=cookie)
    assert 'id="create-module"' in page
    status, headers, body = console_request(hub, BYSTANDER_ADDRESS, "POST", "/console/devices/x509-self/modules", {"csrf": csrf, "module_id": "mod-1"}, cookie=cookie)
    module_path = "/console/devices/x509-self/modules/mod-1"
    assert status == 303 and headers["Location"] == module_path, (status, body[:500])
    assert rm.get_module("x509-self", "mod-1").authentication.type == "sas"
    _, _, page = console_request(hub, BYSTANDER_ADDRESS, "GET", "/console/devices/x509-self", cookie=cookie)
    assert f'href="{module_path}"' in page
    _, _, page = console_request(hub, BYSTANDER_ADDRESS, "GET", module_path, cookie=cookie)
    etag = re.search(r'name="etag" value="([^"]+)"', page).group(1)
    twin = {"csrf": csrf, "etag": etag, "desired": '{"speed": 3}', "tags": '{"site": "a"}'}
    status, _, body = console_request(hub, BYSTANDER_ADDRESS, "POST", module_path + "/twin", twin, cookie=cookie)
    assert status == 200 and "Twin saved" in body, (status, body[:800])
    saved = rm.get_module_twin("x509-self", "mod-1")
    assert saved.properties.desired["speed"] == 3 and saved.tags == {"site": "a"}
    status, _, body = console_request(hub, BYSTANDER_ADDRESS, "POST", module_path + "/twin", dict(twin, desired='{"speed": 4}'), cookie=cookie)
    assert status == 412, (status, body[:800])
    assert rm.get_module_twin("x509-self", "mod-1").properties.desired["speed"] == 3

    read_only = dict(p.split("=", 1) for p in policy_connection_string(hub, "registryRead").split(";"))
    status, headers, _ = console_request(hub, BYSTANDER_ADDRESS, "POST", "/console/signin", {"policy": "registryRead", "key": read_only["SharedAccessKey"]})
    assert status == 303
    reader = headers["Set-Cookie"].split(";", 1)[0]
    _, _, page = console_request(hub, BYSTANDER_ADDRESS, "GET", "/console/devices/x509-self", cookie=reader)
    assert f'href="{module_path}"' in page and 'id="create-module"' not in page
    status, _, page = console_request(hub, BYSTANDER_ADDRESS, "GET", module_path, cookie=reader)
    assert status == 200 and "speed" in page
    assert 'id="twin-form"' not in page and 'id="delete-module"' not in page
    status, _, _ = console_request(hub, BYSTANDER_ADDRESS, "POST", module_path + "/delete", {"csrf": csrf_of(page)}, cookie=reader)
    assert status == 401
    status, _, _ = console_request(hub, BYSTANDER_ADDRESS, "POST", module_path + "/delete", {"csrf": "forged"}, cookie=cookie)
    assert status == 403
    assert rm.get_module("x509-self", "mod-1").module_id == "mod-1"
    status, headers, _ = console_request(hub, BYSTANDER_ADDRESS, "POST", module_path + "/delete", {"csrf": csrf}, cookie=cookie)
    assert status == 303 and headers["Location"] == "/console/devices/x509-self"
    with pytest.raises(HttpOperationError):
        rm.get_module("x509-self", "mod-1")


    # CA certificates: uploaded, a verification code generated, proof of possession given,
    # each step on the condition of the ETag the page showed; the read-only policy sees no
    # forms; deletion. The REST API (IoT Hub's /certificates) sees each step.
    def rest_certificate(name: str):
        token = sas(hub.hostname, owner["SharedAccessKey"], "iothubowner")
        conn = http.client.HTTPSConnection(hub.hostname, 443, context=ssl.create_default_context(cafile=hub.ca_file), timeout=WAIT_S)
        try:
            conn.request("GET", f"/certificates/{name}?api-version=2021-04-12", headers={"Authorization": token})
            response = conn.getresponse()
            return response.status, json.loads(response.read() or b"null")
        finally:
            conn.close()

    make_root(tmp_path, "console-ca", "Console Test CA")
    pem = (tmp_path / "console-ca.pem").read_text()
    upload = {"csrf": csrf, "name": "console-ca", "certificate": pem}
    status, headers, body = console_request(hub, BYSTANDER_ADDRESS, "POST", "/console/certificates", upload, cookie=cookie)
    cert_path = "/console/certificates/console-ca"
    assert status == 303 and headers["Location"] == cert_path, (status, body[:800])
    status, body = rest_certificate("console-ca")
    assert status == 200 and body["properties"]["isVerified"] is False
    status, _, body = console_request(hub, BYSTANDER_ADDRESS, "POST", "/console/certificates", dict(upload, name="bad-ca", certificate="not a certificate"), cookie=cookie)
    assert status == 400, (status, body[:800])
    assert rest_certificate("bad-ca")[0] == 404
    _, _, page = console_request(hub, BYSTANDER_ADDRESS, "GET", "/console/certificates", cookie=cookie)
    assert f'href="{cert_path}"' in page and 'id="upload-certificate"' in page
    _, _, page = console_request(hub, BYSTANDER_ADDRESS, "GET", cert_path, cookie=cookie)
    etag = re.search(r'name="etag" value="([^"]+)"', page).group(1)
    status, _, page = console_request(hub, BYSTANDER_ADDRESS, "POST", cert_path + "/code", {"csrf": csrf, "etag": etag}, cookie=cookie)
    assert status == 200, (status, page[:800])
    code = re.search(r'id="verification-code">([^<]+)<', page).group(1)
    make_signed(tmp_path, "console-proof", code, "console-ca")
    proof = (tmp_path / "console-proof.pem").read_text()
    # The page from before the code was generated is stale: refused, nothing verified.
    status, _, _ = console_request(hub, BYSTANDER_ADDRESS, "POST", cert_path + "/verify", {"csrf": csrf, "etag": etag, "certificate": proof}, cookie=cookie)
    assert status == 412
    assert rest_certificate("console-ca")[1]["properties"]["isVerified"] is False
    etag = re.search(r'name="etag" value="([^"]+)"', page).group(1)
    status, _, page = console_request(hub, BYSTANDER_ADDRESS, "POST", cert_path + "/verify", {"csrf": csrf, "etag": etag, "certificate": proof}, cookie=cookie)
    assert status == 200 and 'id="verified">yes<' in page, (status, page[:800])
    assert rest_certificate("console-ca")[1]["properties"]["isVerified"] is True

    _, _, page = console_request(hub, BYSTANDER_ADDRESS, "GET", cert_path, cookie=reader)
    assert "Console Test CA" in page and 'id="delete-certificate"' not in page
    _, _, page = console_request(hub, BYSTANDER_ADDRESS, "GET", "/console/certificates", cookie=reader)
    assert f'href="{cert_path}"' in page and 'id="upload-certificate"' not in page
    status, _, _ = console_request(hub, BYSTANDER_ADDRESS, "POST", cert_path + "/delete", {"csrf": csrf_of(page)}, cookie=reader)
    assert status == 401
    assert rest_certificate("console-ca")[0] == 200
    status, headers, _ = console_request(hub, BYSTANDER_ADDRESS, "POST", cert_path + "/delete", {"csrf": csrf}, cookie=cookie)
    assert status == 303 and headers["Location"] == "/console/certificates"
    assert rest_certificate("console-ca")[0] == 404


    # Routing: the document, its endpoint's health, and a test of the routes.
    doc = {
        "endpoints": {"storageContainers": [{"name": "cold", "containerName": str(tmp_path / "cold"), "encoding": "json"}]},
        "routes": [
            {"name": "critical", "source": "DeviceMessages", "condition": "level = 'critical'", "endpointNames": ["cold"], "isEnabled": True},
            {"name": "warm", "source": "DeviceMessages", "condition": "level = 'warm'", "endpointNames": ["cold"], "isEnabled": True},
        ],
    }
    r = put_routing(hub, doc)
    assert r.status_code == 200, r.text
    status, _, page = console_request(hub, BYSTANDER_ADDRESS, "GET", "/console/routes", cookie=reader)
    assert status == 200
    assert "level = &#39;critical&#39;" in page or "level = 'critical'" in page, page[:2000]
    health = re.search(r'<table id="endpoint-health">.*?</table>', page, re.S).group(0)
    assert "cold" in health
    test = {"csrf": csrf_of(page), "source": "DeviceMessages", "body": "{}", "properties": "level=critical"}
    status, _, page = console_request(hub, BYSTANDER_ADDRESS, "POST", "/console/routes/test", test, cookie=reader)
    assert status == 200, (status, page[:800])
    matched = re.search(r'<ul id="test-result">(.*?)</ul>', page, re.S).group(1)
    assert "critical" in matched and "warm" not in matched, matched
    status, _, page = console_request(hub, BYSTANDER_ADDRESS, "POST", "/console/routes/test", dict(test, properties="level"), cookie=reader)
    assert status == 400 and "name=value" in page, (status, page[:800])
