"""Streaming generator tasks: items arrive while the task still runs."""
from __future__ import annotations

import asyncio
import time

import pytest

import asyncray as ray

pytestmark = pytest.mark.usefixtures("shared_cluster")


@ray.remote
def count(n):
    for i in range(n):
        yield i


def test_generator_returns_object_ref_generator():
    gen = count.remote(5)
    assert isinstance(gen, ray.ObjectRefGenerator)
    assert [ray.get(ref) for ref in gen] == [0, 1, 2, 3, 4]
    with pytest.raises(StopIteration):
        next(gen)


def test_items_arrive_while_task_runs(tmp_path):
    release = tmp_path / "release"

    @ray.remote
    def gated(path):
        yield "first"
        import os

        while not os.path.exists(path):  # the driver lets it go on after it saw the first item
            time.sleep(0.01)
        yield "second"

    gen = gated.remote(str(release))
    assert ray.get(next(gen), timeout=30) == "first"
    release.write_text("")
    assert ray.get(next(gen), timeout=30) == "second"
    assert list(gen) == []


def test_exception_takes_place_of_next_item_and_ends_stream():
    @ray.remote
    def bad():
        yield 1
        raise KeyError("broken")

    gen = bad.remote()
    assert ray.get(next(gen)) == 1
    with pytest.raises(KeyError):
        ray.get(next(gen))
    with pytest.raises(StopIteration):
        next(gen)


def test_async_for():
    async def consume():
        return [await ref async for ref in count.remote(4)]

    assert asyncio.run(consume()) == [0, 1, 2, 3]


def test_generator_with_num_returns_k():
    @ray.remote(num_returns=3)
    def three():
        yield from ("a", "b", "c")

    assert ray.get(list(three.remote())) == ["a", "b", "c"]


def test_generator_not_picklable():
    import pickle

    with pytest.raises(TypeError, match="cannot be pickled"):
        pickle.dumps(count.remote(1))


def test_large_items_stream_through_store():
    import numpy as np

    @ray.remote
    def arrays():
        for i in range(3):
            yield np.full(200_000, i, dtype=np.float64)

    values = [ray.get(r) for r in arrays.remote()]
    assert [float(v[0]) for v in values] == [0.0, 1.0, 2.0]
    assert not values[0].flags.writeable
