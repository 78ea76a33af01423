"""A device's telemetry sent with PyAMQP (the pure-Python AMQP stack `azure-eventhub` ≥ 5.11
vendors): its sender link transfers as soon as the server's attach arrives, counting on its own
default credit (10000) rather than waiting for the server's flow. The server takes those
transfers (fe2o3-amqp grants the link's credit while it accepts the attach, before the link
reads anything).
"""

from __future__ import annotations

import time

from azure.eventhub._pyamqp import SendClient
from azure.eventhub._pyamqp.authentication import AccessToken, JWTTokenAuth
from azure.eventhub._pyamqp.message import Message, Properties

from dps_helpers import sas, stored_events

IRONHUB_ADDRESS = "127.0.0.67"


def device_key(hub, device_id: str) -> str:
    rm = hub.registry_manager()
    return rm.create_device_with_sas(device_id, None, None, "enabled").authentication.symmetric_key.primary_key


def client(hub, device_id: str, key: str) -> SendClient:
    audience = f"{hub.hostname}/devices/{device_id}"

    def token(*_args, **_kwargs):
        return AccessToken(sas(audience, key), int(time.time()) + 3600)

    auth = JWTTokenAuth(audience, audience, token, token_type=b"servicebus.windows.net:sastoken")
    return SendClient(hub.hostname, f"amqps://{hub.hostname}/devices/{device_id}/messages/events",
                      auth=auth, connection_verify=hub.ca_file)


def test_pyamqp_device_telemetry_is_stored(hub):
    device_id = "pyamqp-1"
    sender = client(hub, device_id, device_key(hub, device_id))
    try:
        sender.open()
        for i in range(3):
            sender.send_message(Message(data=[f"m{i}".encode()], properties=Properties(message_id=f"id-{i}")))
    finally:
        sender.close()
    # Each send returned once the server settled it, that is once the event was stored.
    events = stored_events(hub, device_id)
    assert [e["body"] for e in events] == ["m0", "m1", "m2"]
    assert [e["systemProperties"]["message-id"] for e in events] == ["id-0", "id-1", "id-2"]

