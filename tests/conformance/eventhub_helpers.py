"""Reading events with the Event Hubs SDK for Python (`azure-eventhub`), shared by the modules
that check what reaches an Event Hubs-compatible endpoint."""

from __future__ import annotations

import threading

WAIT_S = 20


def receive_events(client, count: int, where=lambda event: True, wait_s: float = WAIT_S, **receive) -> list:
    """The first `count` events `client` (an `EventHubConsumerClient`) receives that satisfy
    `where`, within `wait_s`; `receive` goes to `client.receive` (`partition_id`,
    `starting_position`, …). Closes the client; fails on a receive error or a shortfall."""
    events: list = []
    errors: list = []
    done = threading.Event()

    def on_event(_ctx, event):
        if event is not None and where(event):
            events.append(event)
            if len(events) >= count:
                done.set()

    def on_error(_ctx, error):
        errors.append(error)
        done.set()

    t = threading.Thread(target=client.receive, daemon=True,
                         kwargs=dict(on_event=on_event, on_error=on_error, **receive))
    t.start()
    done.wait(wait_s)
    client.close()
    t.join(wait_s)
    assert not errors, errors
    assert len(events) >= count, f"only {len(events)} of {count} events arrived"
    return events
