"""Exclusive (epoch) receivers on the Event Hubs-compatible endpoint, with the real Event Hubs
SDK for Python (`EventHubConsumerClient.receive(owner_level=…)`, which sends the link property
`com.microsoft:epoch`). As on Event Hubs (Azure docs, "Event Hubs features": "Epoch"): a receiver
with an epoch at least as high as the holder's takes the partition and the holder is detached
with `amqp:link:stolen`; a receiver with a lower epoch, and a receiver without epoch while an
epoch receiver holds, is refused with the same error; the SDK hands it to `on_error`.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field

from azure.iot.device import Message

from test_eventhub import consumer, device, partition_for

IRONHUB_ADDRESS = "127.0.0.65"
WAIT_S = 20


@dataclass
class Reader:
    """A running `receive` of one partition, what it got and the errors it was handed."""

    client: object
    thread: threading.Thread
    bodies: list = field(default_factory=list)
    errors: list = field(default_factory=list)
    got: threading.Condition = field(default_factory=threading.Condition)

    def wait(self, what, timeout: float = WAIT_S) -> bool:
        with self.got:
            return self.got.wait_for(lambda: what(self), timeout)

    def close(self) -> None:
        self.client.close()
        self.thread.join(WAIT_S)


def start(hub, partition: str, **kwargs) -> Reader:
    client = consumer(hub)
    reader = Reader(client=client, thread=threading.Thread(daemon=True))

    def on_event(_ctx, event):
        if event is not None:
            with reader.got:
                reader.bodies.append(event.body_as_str())
                reader.got.notify_all()

    def on_error(_ctx, error):
        with reader.got:
            reader.errors.append(error)
            reader.got.notify_all()

    reader.thread = threading.Thread(
        target=client.receive,
        kwargs=dict(
            on_event=on_event,
            on_error=on_error,
            partition_id=partition,
            starting_position="@latest",
            **kwargs,
        ),
        daemon=True,
    )
    reader.thread.start()
    return reader


def stolen(error) -> bool:
    """Whether the SDK's error is the link being stolen (the condition is in its text)."""
    return "amqp:link:stolen" in f"{error} {getattr(error, 'error', '')}".lower()


def device_in(partition: int, prefix: str) -> str:
    i = 0
    while partition_for(f"{prefix}-{i}") != partition:
        i += 1
    return f"{prefix}-{i}"


def until_received(hub, client, reader: Reader, text: str) -> None:
    """Sends `text` until `reader` got it (it attaches at `@latest` at a moment we cannot see)."""
    for _ in range(WAIT_S):
        client.send_message(Message(text))
        if reader.wait(lambda r: text in r.bodies, timeout=1):
            return
    raise AssertionError(f"the reader never received {text!r}; errors: {reader.errors}")


def test_a_higher_epoch_takes_over_and_lower_or_no_epoch_is_refused(hub):
    partition = 0
    sender = device(hub, device_in(partition, "epoch"))
    readers: list[Reader] = []
    try:
        first = start(hub, str(partition), owner_level=1)
        readers.append(first)
        until_received(hub, sender, first, "one")
        assert not first.errors, first.errors

        second = start(hub, str(partition), owner_level=2)
        readers.append(second)
        # The holder is disconnected with amqp:link:stolen, which its on_error sees.
        assert first.wait(lambda r: any(stolen(e) for e in r.errors)), first.errors
        until_received(hub, sender, second, "two")

        # A lower epoch is refused while the higher one holds; the holder keeps reading.
        lower = start(hub, str(partition), owner_level=1)
        readers.append(lower)
        assert lower.wait(lambda r: any(stolen(e) for e in r.errors)), lower.errors
        assert not lower.bodies

        # So is a receiver without epoch.
        plain = start(hub, str(partition))
        readers.append(plain)
        assert plain.wait(lambda r: any(stolen(e) for e in r.errors)), plain.errors
        assert not plain.bodies

        until_received(hub, sender, second, "three")
        assert not second.errors, second.errors
    finally:
        for reader in readers:
            reader.close()
        sender.shutdown()


def test_an_epoch_receiver_disconnects_receivers_without_epoch(hub):
    partition = 1
    sender = device(hub, device_in(partition, "plain"))
    readers: list[Reader] = []
    try:
        plain = start(hub, str(partition))
        readers.append(plain)
        until_received(hub, sender, plain, "one")
        exclusive = start(hub, str(partition), owner_level=0)
        readers.append(exclusive)
        assert plain.wait(lambda r: any(stolen(e) for e in r.errors)), plain.errors
        until_received(hub, sender, exclusive, "two")
        # Once the epoch receiver is closed, receivers without epoch are welcome again.
        exclusive.close()
        again = start(hub, str(partition))
        readers.append(again)
        until_received(hub, sender, again, "three")
    finally:
        for reader in readers:
            reader.close()
        sender.shutdown()


def test_epoch_receivers_started_together_leave_the_higher_one_reading(hub):
    """Two epoch receivers started at the same moment on a free partition: whichever attaches
    first, the higher epoch ends up reading and the lower one is refused or stolen from (the
    claim is one compare-and-swap in the store, so the order of their attaches cannot matter).
    """
    partition = 2
    sender = device(hub, device_in(partition, "race"))
    readers: list[Reader] = []
    try:
        low = start(hub, str(partition), owner_level=1)
        high = start(hub, str(partition), owner_level=2)
        readers += [low, high]
        assert low.wait(lambda r: any(stolen(e) for e in r.errors)), low.errors
        until_received(hub, sender, high, "one")
        until_received(hub, sender, high, "two")
        assert not high.errors, high.errors
        assert "two" not in low.bodies
    finally:
        for reader in readers:
            reader.close()
        sender.shutdown()
