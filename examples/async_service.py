"""An asyncio "service" that fans work out to asyncray tasks without blocking its event loop.

Each request handler awaits ObjectRefs directly, or through asyncio's own combinators
(gather, wait_for, as_completed) and asyncray's awaitable get_async / wait_async.

    python examples/async_service.py
"""
import asyncio
import time

import asyncray as ray
from asyncray.exceptions import GetTimeoutError


@ray.remote
def square(x: int) -> int:
    return x * x


@ray.remote
def slow_echo(value, delay_s: float):
    time.sleep(delay_s)
    return value


@ray.remote
def fails(x: int) -> int:
    raise ValueError(f"bad input {x}")


async def heartbeat(stop: asyncio.Event) -> int:
    """Proof that the loop stays responsive while handlers wait on tasks."""
    beats = 0
    while not stop.is_set():
        beats += 1
        try:
            await asyncio.wait_for(stop.wait(), 0.05)
        except asyncio.TimeoutError:
            pass
    return beats


async def handle_one(x: int) -> int:
    # `await ref`: an ObjectRef is awaitable.
    return await square.remote(x)


async def handle_batch(n: int) -> int:
    # asyncio.gather takes ObjectRefs as they are.
    values = await asyncio.gather(*[square.remote(i) for i in range(n)])
    return sum(values)


async def handle_with_deadline() -> str:
    # get_async with a timeout: a slow task turns into GetTimeoutError (also a TimeoutError).
    # The task keeps running, and its ref can still be awaited afterwards.
    ref = slow_echo.remote("late", 1.0)
    try:
        return f"finished in time: {await ray.get_async(ref, timeout=0.2)}"
    except GetTimeoutError:
        return f"timed out, then got {await ref!r}"


async def handle_first_two() -> list:
    # wait_async: the first `num_returns` refs to be ready, without blocking the loop.
    refs = [slow_echo.remote(f"r{i}", 0.1 * i) for i in range(4)]
    ready, not_ready = await ray.wait_async(refs, num_returns=2, timeout=10)
    assert len(ready) == 2 and len(not_ready) == 2
    return sorted(await asyncio.gather(*ready))


async def handle_wait_for() -> int:
    # asyncio.wait_for on a ref.
    return await asyncio.wait_for(square.remote(12), timeout=30)


async def handle_streaming() -> list:
    # asyncio.as_completed: results in the order they finish.
    refs = [slow_echo.remote("slow", 0.6), slow_echo.remote("fast", 0.1)]
    return [await fut for fut in asyncio.as_completed(refs, timeout=30)]


async def handle_error() -> str:
    # A task's exception is raised by `await`, as an instance of the original class.
    try:
        await fails.remote(7)
    except ValueError as e:
        return f"ValueError caught: {str(e).splitlines()[-1]}"
    return "no error?"


async def main() -> None:
    stop = asyncio.Event()
    beats = asyncio.create_task(heartbeat(stop))
    t0 = time.perf_counter()
    print("as_completed order:   ", await handle_streaming())
    print("await ref:            ", await handle_one(9))
    print("gather of 100 refs:   ", await handle_batch(100))
    print("wait_async first two: ", await handle_first_two())
    print("wait_for(ref):        ", await handle_wait_for())
    print("get_async(timeout):   ", await handle_with_deadline())
    print("task error:           ", await handle_error())
    # Handlers running concurrently on one loop.
    concurrent = await asyncio.gather(handle_one(3), handle_batch(10), handle_wait_for())
    print("concurrent handlers:  ", concurrent)
    stop.set()
    print(f"heartbeats while serving: {await beats} in {time.perf_counter() - t0:.2f} s")


if __name__ == "__main__":
    ray.init()
    try:
        asyncio.run(main())
    finally:
        ray.shutdown()
