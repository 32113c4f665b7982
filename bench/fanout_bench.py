"""Event fan-out: one operation's output events to 1…200 SSE subscribers.

For each subscriber count, publishes :data:`EVENTS` output events (200 bytes each) through an
:class:`~linkops.operations.events.EventHub` while every subscriber reads with
:func:`~linkops.operations.events.follow`, and reports publisher throughput (events/s), the
time until the last subscriber has the last event, and how many subscribers were dropped and
resumed from the replay log.

Baseline, same run: a naive broadcaster that ``await``\\ s ``send`` on each subscriber's channel
(what the hub avoids). With one subscriber that stops reading, the naive publisher stalls (we
cap the wait at :data:`STALL_CAP` s) while the hub keeps publishing at full speed.
"""

from __future__ import annotations

import time

import trio

from linkops.operations.events import EventHub, follow

EVENTS = 2_000
PAYLOAD = "x" * 199 + "\n"
STALL_CAP = 2.0


def _hub() -> EventHub:
    return EventHub(task_output_limit=10**9, total_output_limit=10**9)


def _event(i: int) -> dict[str, object]:
    return {"target": "h", "script": "s", "position": 0, "stream": "stdout", "data": PAYLOAD,
            "n": i}


async def hub_case(subscribers: int, *, one_stuck: bool = False) -> tuple[float, float, int]:
    hub = _hub()
    done = 0
    last_seen = 0.0

    async def reader() -> None:
        nonlocal done, last_seen
        async for event in follow(hub, 0):
            if event.kind == "operation_end":
                break
        done += 1
        last_seen = time.perf_counter()

    async def stuck() -> None:
        stream = follow(hub, 0)
        await stream.__anext__()
        await trio.sleep_forever()

    async with trio.open_nursery() as nursery:
        hub.publish("operation", {"status": "running"})
        for _ in range(subscribers):
            nursery.start_soon(reader)
        if one_stuck:
            nursery.start_soon(stuck)
        await trio.sleep(0.05)
        t0 = time.perf_counter()
        for i in range(EVENTS):
            hub.publish("output", _event(i))
            await trio.lowlevel.checkpoint()  # each SSH chunk arrives in its own task step
        published = time.perf_counter() - t0
        hub.publish("operation_end", {"status": "success"})
        while done < subscribers:
            await trio.sleep(0.001)
        nursery.cancel_scope.cancel()
    return EVENTS / published, last_seen - t0, hub.dropped_subscribers


async def naive_case(subscribers: int, *, one_stuck: bool = False) -> float:
    channels = [trio.open_memory_channel[object](512) for _ in range(subscribers + one_stuck)]

    async def reader(receive: trio.MemoryReceiveChannel[object]) -> None:
        async for _ in receive:
            pass

    async with trio.open_nursery() as nursery:
        for _, receive in channels[:subscribers]:
            nursery.start_soon(reader, receive)
        t0 = time.perf_counter()
        sent = 0
        with trio.move_on_after(STALL_CAP):
            for i in range(EVENTS):
                for send, _ in channels:
                    await send.send(_event(i))
                sent += 1
        elapsed = time.perf_counter() - t0
        nursery.cancel_scope.cancel()
    return sent / elapsed


async def amain() -> None:
    print(f"{EVENTS} events of {len(PAYLOAD)} bytes")
    print(f"{'subs':>5} {'hub ev/s':>10} {'deliver s':>10} {'dropped':>8} {'naive ev/s':>11}")
    for subs in (1, 10, 50, 200):
        rate, deliver, dropped = await hub_case(subs)
        naive = await naive_case(subs)
        print(f"{subs:>5} {rate:>10.0f} {deliver:>10.3f} {dropped:>8} {naive:>11.0f}")
    rate, deliver, dropped = await hub_case(10, one_stuck=True)
    naive = await naive_case(10, one_stuck=True)
    print(f"10 readers + 1 stuck: hub {rate:.0f} ev/s (dropped {dropped}, delivered in "
          f"{deliver:.3f} s); naive {naive:.0f} ev/s (stalled, capped at {STALL_CAP:g} s)")


def main() -> None:
    trio.run(amain)


if __name__ == "__main__":
    main()
