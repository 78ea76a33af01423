"""The Device Provisioning Service against the real Python SDKs: the service SDK
(`azure-iot-deviceprovisioning`) manages enrollments, groups and registrations; the device SDK's
`ProvisioningDeviceClient` registers over MQTT and over WebSocket (symmetric key, individual
and group); each provisioned device then connects to its assigned hub with `IoTHubDeviceClient`
and sends telemetry that the hub's event log holds."""

from __future__ import annotations

import json

import pytest
from azure.iot.device import IoTHubDeviceClient, Message, ProvisioningDeviceClient
from azure.iot.deviceprovisioning import DeviceProvisioningClient

from dps_helpers import derive, dps_info, error_chain, new_key, stored_events, wait_for

IRONHUB_ADDRESS = "127.0.0.10"


@pytest.fixture(scope="module")
def dps(hub):
    """The service SDK's client, with the DPS connection string `ironhub info` prints."""
    return DeviceProvisioningClient.from_connection_string(
        dps_info(hub)["serviceConnectionString"], connection_verify=hub.ca_file
    )


def ca_pem(hub) -> str:
    with open(hub.ca_file) as f:
        return f.read()


def provision(hub, registration_id: str, key: str, websockets: bool, payload=None):
    client = ProvisioningDeviceClient.create_from_symmetric_key(
        provisioning_host=hub.address,
        registration_id=registration_id,
        id_scope=dps_info(hub)["idScope"],
        symmetric_key=key,
        server_verification_cert=ca_pem(hub),
        websockets=websockets,
    )
    if payload is not None:
        client.provisioning_payload = payload
    return client.register()


def send_from_assigned_hub(hub, result, key: str, text: str) -> None:
    """Connects the provisioned device to its hub and sends one message, as the samples do."""
    state = result.registration_state
    device = IoTHubDeviceClient.create_from_symmetric_key(
        symmetric_key=key,
        hostname=state.assigned_hub,
        device_id=state.device_id,
        server_verification_cert=ca_pem(hub),
    )
    try:
        device.connect()
        device.send_message(Message(text))
    finally:
        device.shutdown()
    wait_for(
        lambda: text in [e["body"] for e in stored_events(hub, state.device_id)],
        what=f"{state.device_id}'s telemetry in the event log",
    )


@pytest.mark.parametrize("websockets", [False, True], ids=["mqtt", "websocket"])
def test_individual_symmetric_key_enrollment(hub, dps, websockets):
    rid = f"py-ind-{'ws' if websockets else 'mqtt'}"
    key, second = new_key(), new_key()
    created = dps.enrollment.create_or_update(
        id=rid,
        enrollment={
            "registrationId": rid,
            "attestation": {"type": "symmetricKey",
                            "symmetricKey": {"primaryKey": key, "secondaryKey": second}},
            "initialTwin": {"tags": {"site": "lab"}, "properties": {"desired": {"fw": "1.0"}}},
        },
    )
    assert created["registrationId"] == rid
    assert created["provisioningStatus"] == "enabled"
    assert created["etag"]
    # A read shows no keys; the attestation mechanism call does.
    shown = dps.enrollment.get(id=rid)
    assert shown["attestation"] == {"type": "symmetricKey", "symmetricKey": {}}
    mechanism = dps.enrollment.get_attestation_mechanism(id=rid)
    assert mechanism["symmetricKey"]["primaryKey"] == key

    result = provision(hub, rid, key, websockets, payload={"fw": "0.9"})
    assert result.status == "assigned"
    state = result.registration_state
    assert state.assigned_hub == hub.hostname
    assert state.device_id == rid
    assert state.sub_status == "initialAssignment"

    # The hub has the device with the enrollment's keys and its initial twin.
    rm = hub.registry_manager()
    device = rm.get_device(rid)
    assert device.authentication.symmetric_key.primary_key == key
    assert device.authentication.symmetric_key.secondary_key == second
    twin = rm.get_twin(rid)
    assert twin.tags == {"site": "lab"}
    assert twin.properties.desired["fw"] == "1.0"

    # The registration record, through the service SDK.
    record = dps.device_registration_state.get(id=rid)
    assert record["status"] == "assigned"
    assert record["assignedHub"] == hub.hostname

    send_from_assigned_hub(hub, result, key, f"hello from {rid}")

    # The secondary key registers the same device again.
    again = provision(hub, rid, second, websockets)
    assert again.status == "assigned"
    assert again.registration_state.device_id == rid


@pytest.mark.parametrize("websockets", [False, True], ids=["mqtt", "websocket"])
def test_group_symmetric_key_enrollment_with_derived_keys(hub, dps, websockets):
    gid = f"py-group-{'ws' if websockets else 'mqtt'}"
    created = dps.enrollment_group.create_or_update(
        id=gid,
        enrollment_group={"enrollmentGroupId": gid,
                          "attestation": {"type": "symmetricKey", "symmetricKey": {}}},
    )
    assert created["enrollmentGroupId"] == gid
    group_key = dps.enrollment_group.get_attestation_mechanism(id=gid)["symmetricKey"]["primaryKey"]
    assert len(group_key) == 88, "a generated key is 64 bytes"

    rid = f"{gid}-dev1"
    device_key = derive(group_key, rid)
    result = provision(hub, rid, device_key, websockets)
    assert result.status == "assigned"
    assert result.registration_state.device_id == rid
    rm = hub.registry_manager()
    assert rm.get_device(rid).authentication.symmetric_key.primary_key == device_key
    send_from_assigned_hub(hub, result, device_key, f"hello from {rid}")

    records = list(dps.device_registration_state.query(id=gid))
    assert [r["registrationId"] for r in records] == [rid]

    # The group key itself is not a device key: refused, and nothing is created.
    with pytest.raises(Exception) as refused:
        provision(hub, f"{gid}-raw", group_key, websockets)
    assert "status code 401" in error_chain(refused.value)
    with pytest.raises(Exception):
        rm.get_device(f"{gid}-raw")


# ---- Tasmota (xdrv_02_9_mqtt.ino, USE_MQTT_AZURE_DPS_*) -----------------------------------


def tasmota_encode(s: str) -> str:
    """`urlEncodeBase64`: only `+ = /` are encoded."""
    return s.replace("+", "%2B").replace("=", "%3D").replace("/", "%2F")


def tasmota_sign(data: str, key: str) -> str:
    """`Sha256Sign`: base64(HMAC-SHA256(base64decode(key), data))."""
    import base64
    import hashlib
    import hmac

    return base64.b64encode(hmac.new(base64.b64decode(key), data.encode(), hashlib.sha256).digest()).decode()


def tasmota_tls():
    import ssl

    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.maximum_version = ssl.TLSVersion.TLSv1_2  # BearSSL: TLS 1.2 only
    ctx.set_ciphers("ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256")
    return ctx


def test_tasmota_https_provisioning_then_mqtt(hub, dps):
    """Byte for byte what `ProvisionAzureDPS()` sends: a group enrollment's key derived on the
    device over its upper-case MAC, a PUT that must answer exactly 202 with "assigning", up to
    four GETs (the first at once, then after 1, 2 and 3 s) that must find the compact
    `"status":"assigned"`; then its MQTT session to the assigned hub with the derived key."""
    import http.client
    import json
    import time

    import paho.mqtt.client as paho

    group = dps.enrollment_group.create_or_update(
        id="tasmota-fleet",
        enrollment_group={"enrollmentGroupId": "tasmota-fleet",
                          "attestation": {"type": "symmetricKey", "symmetricKey": {}}},
    )
    assert group["enrollmentGroupId"] == "tasmota-fleet"
    psk = dps.enrollment_group.get_attestation_mechanism(id="tasmota-fleet")["symmetricKey"]["primaryKey"]
    scope = dps_info(hub)["idScope"]
    mac = "A0B1C2D3E4F5"  # WiFi.macAddress() without the colons
    device_key = tasmota_sign(mac, psk)
    ttl = int(time.time()) + 3600
    sr = tasmota_encode(f"{scope}/registrations/{mac}")
    sig = tasmota_encode(tasmota_sign(f"{sr}\n{ttl}", device_key))
    token = f"SharedAccessSignature sr={sr}&sig={sig}&skn=registration&se={ttl}"
    headers = {"User-Agent": "Tasmota", "Content-Type": "application/json",
               "Content-Encoding": "utf-8", "Authorization": token}

    ctx = tasmota_tls()
    ctx.load_verify_locations(hub.ca_file)
    conn = http.client.HTTPSConnection(hub.address, 443, context=ctx, timeout=30)
    conn.request("PUT", f"/{scope}/registrations/{mac}/register?api-version=2019-03-31",
                 body='{"registrationId": "' + mac + '"}', headers=headers)
    response = conn.getresponse()
    body = response.read().decode()
    assert response.status == 202, body  # HTTP_CODE_ACCEPTED, or Tasmota restarts
    assert '"assigning"' in body
    operation_id = json.loads(body)["operationId"]

    assigned = None
    for counter in range(1, 5):
        conn.request("GET", f"/{scope}/registrations/{mac}/operations/{operation_id}?api-version=2019-03-31",
                     headers=headers)
        response = conn.getresponse()
        text = response.read().decode()
        if response.status == 200 and text.find('"status":"assigned"') > 0:
            assigned = json.loads(text)
            break
        assert response.status == 202, text
        time.sleep(counter)
    conn.close()
    assert assigned, "Tasmota gives up after four polls"
    state = assigned["registrationState"]
    device_id, iot_hub = state["deviceId"], state["assignedHub"]
    assert device_id == mac and iot_hub == hub.hostname

    # The MQTT session Tasmota opens next: username `{host}/{deviceId}` (no api-version),
    # the SAS of AzurePSKtoToken with the derived key, its LWT as Will.
    sr = tasmota_encode(f"{iot_hub}/devices/{device_id}")
    se = int(time.time()) + 86400
    signature = tasmota_encode(tasmota_sign(f"{sr}\n{se}", device_key))
    password = f"SharedAccessSignature sr={sr}&sig={signature}&se={se}"
    c = paho.Client(client_id=device_id, clean_session=True, protocol=paho.MQTTv311)
    c.username_pw_set(f"{iot_hub}/{device_id}", password)
    c.will_set(f"tele/{device_id}/LWT", "Offline", qos=1, retain=True)
    mctx = tasmota_tls()
    mctx.load_verify_locations(hub.ca_file)
    c.tls_set_context(mctx)
    connack = []
    c.on_connect = lambda *a: connack.append(a[3])
    c.connect(hub.address, 8883, keepalive=30)
    c.loop_start()
    try:
        wait_for(lambda: connack, what="CONNACK")
        assert connack == [0]
        info = c.publish(f"devices/{device_id}/messages/events/topic=tele%2F{device_id}%2FSTATE",
                         '{"POWER":"ON"}', qos=0, retain=True)
        info.wait_for_publish(20)
        events = wait_for(lambda: stored_events(hub, device_id), what="Tasmota's telemetry")
        assert events[0]["applicationProperties"]["topic"] == f"tele/{device_id}/STATE"
    finally:
        c.loop_stop()
        c.disconnect()


# ---- bad input: answered as DPS answers, and nothing created ------------------------------


def device_http(hub, method: str, path: str, token: str | None, body=b"", headers=None):
    import requests

    h = {"Content-Type": "application/json", **(headers or {})}
    if token:
        h["Authorization"] = token
    return requests.request(method, f"https://{hub.address}{path}", params={"api-version": "2021-06-01"},
                            data=body, headers=h, verify=hub.ca_file, timeout=30)


def assert_nothing_created(hub, dps, rid: str) -> None:
    from azure.core.exceptions import ResourceNotFoundError

    with pytest.raises(ResourceNotFoundError):
        dps.device_registration_state.get(id=rid)
    with pytest.raises(Exception):
        hub.registry_manager().get_device(rid)


def test_bad_device_requests_over_https(hub, dps):
    from dps_helpers import sas

    scope = dps_info(hub)["idScope"]
    key = new_key()
    rid = "bad-https"
    dps.enrollment.create_or_update(id=rid, enrollment={
        "registrationId": rid,
        "attestation": {"type": "symmetricKey", "symmetricKey": {"primaryKey": key, "secondaryKey": key}}})
    path = f"/{scope}/registrations/{rid}/register"
    body = json.dumps({"registrationId": rid}).encode()
    good = sas(f"{scope}/registrations/{rid}", key, "registration")

    def refused(response, status: int, code: int):
        assert response.status_code == status, response.text
        assert response.headers["Content-Type"].startswith("application/json")
        error = response.json()
        assert error["errorCode"] == code, error
        assert error["message"] and error["trackingId"] and error["timestampUtc"]

    refused(device_http(hub, "PUT", path, sas(f"{scope}/registrations/{rid}", new_key(), "registration"), body),
            401, 401002)
    refused(device_http(hub, "PUT", path, sas(f"{scope}/registrations/{rid}", key, "registration", ttl=-60), body),
            401, 401002)
    refused(device_http(hub, "PUT", path, None, body), 401, 401002)
    refused(device_http(hub, "PUT", path, good, b"{not json"), 400, 400004)
    refused(device_http(hub, "PUT", path, good, json.dumps({"registrationId": "someone-else"}).encode()),
            400, 400004)
    refused(device_http(hub, "PUT", path, good, b"{" + b" " * (96 * 1024) + b"}"), 413, 413001)
    other_scope = "0ne00000000" if scope != "0ne00000000" else "0ne11111111"
    refused(device_http(hub, "PUT", f"/{other_scope}/registrations/{rid}/register",
                        sas(f"{other_scope}/registrations/{rid}", key, "registration"), body), 404, 404000)
    assert_nothing_created(hub, dps, rid)

    # A good registration, then more polls than DPS allows in 10 s: 429 with Retry-After.
    r = device_http(hub, "PUT", path, good, body, {"Content-Encoding": "utf-8"})
    assert r.status_code == 202, r.text
    op = r.json()["operationId"]
    statuses = [device_http(hub, "GET", f"/{scope}/registrations/{rid}/operations/{op}", good).status_code
                for _ in range(6)]
    assert set(statuses[:5]) <= {200, 202} and statuses[4] == 200, statuses
    assert statuses[5] == 429
    throttled = device_http(hub, "GET", f"/{scope}/registrations/{rid}/operations/{op}", good)
    assert throttled.status_code == 429 and int(throttled.headers["Retry-After"]) > 0
    assert throttled.json()["errorCode"] == 429001


def test_bad_device_requests_over_mqtt(hub, dps):
    """PYDEV's wire, by hand: wrong and expired keys, malformed JSON and an unknown operation
    are each answered on `$dps/registrations/res/{status}/?$rid=…` with a JSON body."""
    import queue
    import ssl

    import paho.mqtt.client as paho

    from dps_helpers import sas

    scope = dps_info(hub)["idScope"]
    key = new_key()
    rid = "bad-mqtt"
    dps.enrollment.create_or_update(id=rid, enrollment={
        "registrationId": rid,
        "attestation": {"type": "symmetricKey", "symmetricKey": {"primaryKey": key, "secondaryKey": key}}})

    def session(token: str):
        answers = queue.Queue()
        c = paho.Client(client_id=rid, clean_session=False, protocol=paho.MQTTv311)
        c.username_pw_set(f"{scope}/registrations/{rid}/api-version=2019-03-31&ClientVersion=test", token)
        ctx = ssl.create_default_context(cafile=hub.ca_file)
        c.tls_set_context(ctx)
        c.on_message = lambda cl, u, m: answers.put((m.topic, m.payload))
        connected = []
        c.on_connect = lambda *a: connected.append(a[3])
        c.connect(hub.address, 8883, keepalive=60)
        c.loop_start()
        wait_for(lambda: connected, what="CONNACK")
        assert connected == [0]
        c.subscribe("$dps/registrations/res/#", 1)
        return c, answers

    def ask(c, answers, topic: str, payload: bytes):
        c.publish(topic, payload, qos=1)
        topic, body = answers.get(timeout=20)
        return topic, json.loads(body)

    for token, expected in [
        (sas(f"{scope}/registrations/{rid}", new_key()), 401),
        (sas(f"{scope}/registrations/{rid}", key, ttl=-60), 401),
    ]:
        c, answers = session(token)
        try:
            topic, body = ask(c, answers, "$dps/registrations/PUT/iotdps-register/?$rid=7",
                              json.dumps({"registrationId": rid, "payload": None}).encode())
            assert topic == f"$dps/registrations/res/{expected}/?$rid=7"
            assert body["errorCode"] == 401002
        finally:
            c.loop_stop()
            c.disconnect()

    c, answers = session(sas(f"{scope}/registrations/{rid}", key))
    try:
        topic, body = ask(c, answers, "$dps/registrations/PUT/iotdps-register/?$rid=8", b"{not json")
        assert topic == "$dps/registrations/res/400/?$rid=8" and body["errorCode"] == 400004
        topic, body = ask(c, answers,
                          "$dps/registrations/GET/iotdps-get-operationstatus/?$rid=9&operationId=4.nope", b" ")
        assert topic == "$dps/registrations/res/404/?$rid=9", topic
        # Subscriptions DPS does not serve are refused, not disconnected.
        result, mid = c.subscribe("devices/bad-mqtt/messages/devicebound/#", 1)
        assert result == 0
        # A valid request still works on the same connection.
        topic, body = ask(c, answers, "$dps/registrations/PUT/iotdps-register/?$rid=10",
                          json.dumps({"registrationId": rid}).encode())
        assert topic.startswith("$dps/registrations/res/202/?$rid=10&retry-after="), topic
        assert body["status"] == "assigning"
        op = body["operationId"]
        # The same rules as over HTTPS (one handler in the domain): a request over 96 KB is a
        # 413, and a throttled poll is a 429 with its retry-after.
        topic, body = ask(c, answers, "$dps/registrations/PUT/iotdps-register/?$rid=11",
                          b"{" + b" " * (96 * 1024) + b"}")
        assert topic == "$dps/registrations/res/413/?$rid=11" and body["errorCode"] == 413001
        topics = [ask(c, answers, f"$dps/registrations/GET/iotdps-get-operationstatus/?$rid=12&operationId={op}",
                      b"")[0] for _ in range(5)]
        throttled = [t for t in topics if t.startswith("$dps/registrations/res/429/")]
        assert throttled, topics
        assert throttled[0].startswith("$dps/registrations/res/429/?$rid=12&retry-after="), throttled
    finally:
        c.loop_stop()
        c.disconnect()


@pytest.mark.parametrize("kind", ["individual", "group"])
def test_disabled_enrollments_refuse_their_devices(hub, dps, kind):
    """DPS answers a disabled enrollment's device with a final status `disabled` (and keeps a
    registration record saying so); the device is not created in any hub."""
    rid = f"disabled-{kind}"
    key = new_key()
    if kind == "individual":
        dps.enrollment.create_or_update(id=rid, enrollment={
            "registrationId": rid, "provisioningStatus": "disabled",
            "attestation": {"type": "symmetricKey", "symmetricKey": {"primaryKey": key, "secondaryKey": key}}})
        device_key = key
    else:
        dps.enrollment_group.create_or_update(id=f"{rid}-group", enrollment_group={
            "enrollmentGroupId": f"{rid}-group", "provisioningStatus": "disabled",
            "attestation": {"type": "symmetricKey", "symmetricKey": {"primaryKey": key, "secondaryKey": key}}})
        device_key = derive(key, rid)
    with pytest.raises(Exception) as refused:
        provision(hub, rid, device_key, websockets=False)
    assert "disabled" in error_chain(refused.value)
    record = dps.device_registration_state.get(id=rid)
    assert record["status"] == "disabled"
    assert "assignedHub" not in record
    with pytest.raises(Exception):
        hub.registry_manager().get_device(rid)


def test_acknowledged_dps_state_survives_kill9(hub, dps):
    """An enrollment answered 200 and a registration answered `assigned` are there after a
    SIGKILL and a restart; the ID scope never changes; an operation the dead server left
    `assigning` is answered `failed`, so the device registers again."""
    from dps_helpers import sas

    scope = dps_info(hub)["idScope"]
    key = new_key()
    made = dps.enrollment.create_or_update(id="survivor", enrollment={
        "registrationId": "survivor",
        "attestation": {"type": "symmetricKey", "symmetricKey": {"primaryKey": key, "secondaryKey": key}}})
    assert made["etag"]
    result = provision(hub, "survivor", key, websockets=False)
    assert result.status == "assigned"
    # A registration started right before the kill: the answer was 202, its assignment may or
    # may not have finished.
    late_key = new_key()
    dps.enrollment.create_or_update(id="late", enrollment={
        "registrationId": "late",
        "attestation": {"type": "symmetricKey", "symmetricKey": {"primaryKey": late_key, "secondaryKey": late_key}}})
    token = sas(f"{scope}/registrations/late", late_key, "registration")
    started = device_http(hub, "PUT", f"/{scope}/registrations/late/register", token,
                          json.dumps({"registrationId": "late"}).encode())
    assert started.status_code == 202, started.text
    operation = started.json()["operationId"]

    hub.kill9()
    hub.restart()

    assert dps_info(hub)["idScope"] == scope
    again = DeviceProvisioningClient.from_connection_string(
        dps_info(hub)["serviceConnectionString"], connection_verify=hub.ca_file)
    assert again.enrollment.get(id="survivor")["etag"] == made["etag"]
    assert again.device_registration_state.get(id="survivor")["status"] == "assigned"
    assert hub.registry_manager().get_device("survivor").authentication.symmetric_key.primary_key == key
    polled = device_http(hub, "GET", f"/{scope}/registrations/late/operations/{operation}", token)
    assert polled.status_code == 200, polled.text
    assert polled.json()["status"] in ("assigned", "failed"), polled.text
    # Registering again works either way.
    assert provision(hub, "late", late_key, websockets=False).status == "assigned"


def test_an_enrollment_disabled_after_assignment_refuses_its_device(hub, dps):
    rid = "disabled-later"
    key = new_key()
    made = dps.enrollment.create_or_update(id=rid, enrollment={
        "registrationId": rid,
        "attestation": {"type": "symmetricKey", "symmetricKey": {"primaryKey": key, "secondaryKey": key}}})
    assert provision(hub, rid, key, websockets=False).status == "assigned"
    shown = dps.enrollment.get(id=rid)
    shown["provisioningStatus"] = "disabled"
    dps.enrollment.create_or_update(id=rid, enrollment=shown, if_match=made["etag"])
    with pytest.raises(Exception) as refused:
        provision(hub, rid, key, websockets=True)
    assert "disabled" in error_chain(refused.value)
    assert dps.device_registration_state.get(id=rid)["status"] == "disabled"
    # DPS does not deprovision: the hub device stays until the hub's operator removes it.
    assert hub.registry_manager().get_device(rid).device_id == rid
