"""Objects on a real local cluster: put/get/wait, ObjectRef, nested refs, numpy zero-copy, freeing."""
from __future__ import annotations

import dataclasses
import fractions
import gc
import os
import pickle
import threading
import time

import numpy as np
import pytest

import asyncray as ray
from helpers import wait_for_file
from asyncray import exceptions as exc

pytestmark = pytest.mark.usefixtures("shared_cluster")

POLL_DEADLINE_S = 30.0


@dataclasses.dataclass
class Point:
    x: int
    y: float


class CustomError(Exception):
    pass


@ray.remote
def echo(x):
    return x


@ray.remote
def wait_gate(path, value, deadline_s=60.0):
    """Returns `value` once the file `path` exists."""
    wait_for_file(path, deadline_s)
    return value


def _open(path) -> None:
    with open(path, "w"):
        pass


def _poll(cond, what: str, timeout: float = POLL_DEADLINE_S) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.01)


def _segments_of(ref_hex: str) -> list[str]:
    return [n for n in os.listdir("/dev/shm") if n.startswith("asyncray-") and n.endswith(ref_hex)]


# ============================================================================ put / get
VALUES = [
    None, True, False, 0, -1, 2**100, 3.25, float("inf"), complex(1, -2), "", "héllo", b"", b"\x00\xff" * 10,
    bytearray(b"abc"), [], [1, [2, [3]]], (), (1, "a", None), {}, {"a": 1, 2: [3], (4, 5): {"b": None}},
    {1, 2, 3}, frozenset({"x"}), range(3, 10, 2), fractions.Fraction(3, 7), Point(1, 2.5),
    b"x" * 300_000,  # above the inline limit: travels through the shared-memory store
    "y" * 300_000,
    list(range(50_000)),
]


@pytest.mark.parametrize("value", VALUES, ids=lambda v: type(v).__name__)
def test_put_get_round_trip(value):
    ref = ray.put(value)
    assert isinstance(ref, ray.ObjectRef)
    out = ray.get(ref)
    assert type(out) is type(value)
    assert out == value


@pytest.mark.parametrize("value", VALUES[:8] + [Point(3, 4.0), b"z" * 200_000], ids=lambda v: type(v).__name__)
def test_task_return_round_trip(value):
    assert ray.get(echo.remote(value)) == value


def test_put_get_functions_exceptions_and_nan():
    fn = ray.get(ray.put(lambda x: x * 3))
    assert fn(3) == 9
    err = ray.get(ray.put(CustomError("stored, not raised")))
    assert isinstance(err, CustomError) and err.args == ("stored, not raised",)
    nan = ray.get(ray.put(float("nan")))
    assert nan != nan


def test_numpy_values_round_trip():
    values = [
        np.arange(10), np.float32(1.5), np.zeros((3, 4), dtype=np.complex64),
        np.array([(1, 2.0)], dtype=[("a", "i4"), ("b", "f8")]), np.array(["a", "bc"]),
        np.arange(1_000_000, dtype=np.int32).reshape(1000, 1000),
    ]
    for v in values:
        out = ray.get(ray.put(v))
        assert type(out) is type(v)
        np.testing.assert_array_equal(out, v)
        if isinstance(v, np.ndarray):
            assert out.dtype == v.dtype


def test_get_list_preserves_order():
    refs = [ray.put(i) for i in range(20)] + [echo.remote(i) for i in range(20, 40)]
    assert ray.get(refs) == list(range(40))
    assert ray.get(tuple(refs[:3])) == [0, 1, 2]
    assert ray.get([]) == []


def test_get_same_ref_twice_in_list():
    r = ray.put("same")
    assert ray.get([r, r, r]) == ["same"] * 3


def test_get_non_ref_raises_value_error():
    with pytest.raises(ValueError, match="ObjectRef"):
        ray.get(1)
    with pytest.raises(ValueError):
        ray.get("not a ref")
    with pytest.raises(ValueError):
        ray.get({ray.put(1)})


def test_get_list_with_non_ref_raises_type_error():
    r = ray.put(1)
    with pytest.raises(TypeError, match="item 1"):
        ray.get([r, 2])
    with pytest.raises(TypeError):
        ray.get([None])


def test_put_of_ref_raises_type_error():
    r = ray.put(1)
    with pytest.raises(TypeError, match="put"):
        ray.put(r)
    # Wrapped in a list it is allowed, and the ref survives the round trip.
    outer = ray.put([r])
    inner = ray.get(outer)[0]
    assert isinstance(inner, ray.ObjectRef) and inner == r
    assert ray.get(inner) == 1


def test_get_timeout_raises_get_timeout_error(tmp_path):
    gate = tmp_path / "gate"
    ref = wait_gate.remote(str(gate), "opened")
    try:
        t0 = time.monotonic()
        with pytest.raises(exc.GetTimeoutError) as info:
            ray.get(ref, timeout=0.2)
        assert time.monotonic() - t0 >= 0.19
        assert isinstance(info.value, TimeoutError)
        assert isinstance(info.value, exc.RayError)
        # A list with one pending ref times out the same way.
        with pytest.raises(TimeoutError):
            ray.get([ray.put(1), ref], timeout=0.05)
        with pytest.raises(exc.GetTimeoutError):
            ray.get(ref, timeout=0)
    finally:
        _open(gate)
    assert ray.get(ref, timeout=POLL_DEADLINE_S) == "opened"


def test_get_negative_timeout_rejected():
    with pytest.raises(ValueError):
        ray.get(ray.put(1), timeout=-1)


def test_get_raises_task_error():
    @ray.remote
    def fail():
        raise CustomError("boom")

    with pytest.raises(CustomError, match="boom"):
        ray.get(fail.remote())
    with pytest.raises(exc.RayTaskError):
        ray.get([ray.put(1), fail.remote()])


# ============================================================================ wait
def test_wait_num_returns_and_timeout(tmp_path):
    gate = tmp_path / "gate"
    pending = wait_gate.remote(str(gate), "late")
    try:
        done = [ray.put(i) for i in range(3)]
        ready, not_ready = ray.wait(done + [pending], num_returns=2)
        assert ready == done[:2]
        assert not_ready == [done[2], pending]
        ready, not_ready = ray.wait(done + [pending], num_returns=3, timeout=0)
        assert ready == done and not_ready == [pending]
        # timeout=0 never blocks: fewer than num_returns may come back.
        ready, not_ready = ray.wait([pending], timeout=0)
        assert ready == [] and not_ready == [pending]
        ready, not_ready = ray.wait(done + [pending], num_returns=4, timeout=0)
        assert ready == done and not_ready == [pending]
        t0 = time.monotonic()
        ready, not_ready = ray.wait([pending, done[0]], num_returns=2, timeout=0.2)
        assert time.monotonic() - t0 >= 0.19
        assert ready == [done[0]] and not_ready == [pending]
    finally:
        _open(gate)
    ready, not_ready = ray.wait([pending], timeout=POLL_DEADLINE_S)
    assert ready == [pending] and not_ready == []
    assert ray.get(pending) == "late"


def test_wait_default_returns_one():
    refs = [ray.put(i) for i in range(5)]
    ready, not_ready = ray.wait(refs)
    assert ready == refs[:1] and not_ready == refs[1:]


def test_wait_ready_list_follows_input_order(tmp_path):
    gate_a, gate_b = tmp_path / "a", tmp_path / "b"
    a = wait_gate.remote(str(gate_a), "a")
    b = wait_gate.remote(str(gate_b), "b")
    p1, p2 = ray.put("p1"), ray.put("p2")
    refs = [a, p1, b, p2]
    try:
        ready, not_ready = ray.wait(refs, num_returns=2, timeout=0)
        assert ready == [p1, p2] and not_ready == [a, b]
        # b finishes before a, yet the ready list keeps the input order.
        _open(gate_b)
        assert ray.get(b, timeout=POLL_DEADLINE_S) == "b"
        ready, not_ready = ray.wait(refs, num_returns=3, timeout=POLL_DEADLINE_S)
        assert ready == [p1, b, p2] and not_ready == [a]
        # With num_returns below what is ready, the first ones in input order are chosen.
        ready, not_ready = ray.wait(refs, num_returns=2, timeout=0)
        assert ready == [p1, b] and not_ready == [a, p2]
    finally:
        _open(gate_a)
        _open(gate_b)
    assert ray.get(a, timeout=POLL_DEADLINE_S) == "a"
    ready, not_ready = ray.wait(refs, num_returns=4, timeout=POLL_DEADLINE_S)
    assert ready == refs and not_ready == []


def test_wait_ready_order_after_reverse_completion(tmp_path):
    gates = [tmp_path / f"g{i}" for i in range(2)]
    refs = [wait_gate.remote(str(g), i) for i, g in enumerate(gates)]
    try:
        for g, r in zip(reversed(gates), reversed(refs)):
            _open(g)
            ray.get(r, timeout=POLL_DEADLINE_S)
    finally:
        for g in gates:
            _open(g)
    ready, not_ready = ray.wait(list(reversed(refs)), num_returns=2)
    assert ready == list(reversed(refs)) and not_ready == []


def test_wait_argument_errors():
    r1, r2 = ray.put(1), ray.put(2)
    with pytest.raises(ValueError, match="unique"):
        ray.wait([r1, r1])
    with pytest.raises(ValueError, match="num_returns"):
        ray.wait([r1, r2], num_returns=3)
    with pytest.raises(ValueError):
        ray.wait([r1], num_returns=0)
    with pytest.raises(TypeError):
        ray.wait([r1, 2])
    with pytest.raises(TypeError):
        ray.wait(r1)  # a bare ref, not a list
    with pytest.raises(TypeError):
        ray.wait("abc")
    with pytest.raises(ValueError):
        ray.wait([r1], timeout=-1)


def test_wait_empty_list():
    assert ray.wait([]) == ([], [])
    assert ray.wait([], num_returns=3, timeout=0) == ([], [])


def test_wait_counts_failed_tasks_as_ready():
    @ray.remote
    def fail():
        raise CustomError("failed, but ready")

    bad = fail.remote()
    ready, not_ready = ray.wait([bad], timeout=POLL_DEADLINE_S)
    assert ready == [bad] and not_ready == []
    with pytest.raises(CustomError):
        ray.get(bad)


def test_wait_on_task_results():
    refs = [echo.remote(i) for i in range(10)]
    ready, not_ready = ray.wait(refs, num_returns=10, timeout=POLL_DEADLINE_S)
    assert ready == refs and not_ready == []
    assert ray.get(ready) == list(range(10))


# ============================================================================ ObjectRef
def test_object_ref_identity():
    r = ray.put("x")
    h = r.hex()
    assert isinstance(h, str) and len(h) == 56
    int(h, 16)  # hex digits only
    b = r.binary()
    assert isinstance(b, bytes) and len(b) == 28
    assert b.hex() == h
    assert h in repr(r)
    assert repr(r).startswith("ObjectRef(")


def test_object_ref_hash_eq_and_dict_key():
    r1 = ray.put(1)
    r2 = ray.put(1)
    assert r1 != r2 and r1.binary() != r2.binary()
    assert r1 == r1
    assert r1 != "not a ref"
    # Another instance for the same id (as a borrowed copy is) compares and hashes equal.
    r1_copy = ray.get(ray.put([r1]))[0]
    assert r1_copy is not r1
    assert r1_copy == r1 and hash(r1_copy) == hash(r1)
    table = {r1: "one", r2: "two"}
    assert table[r1_copy] == "one"
    assert len({r1, r1_copy, r2}) == 2
    task_ref = echo.remote(3)
    table[task_ref] = "task"
    assert table[task_ref] == "task"
    assert ray.get(task_ref) == 3


def test_task_refs_unique_and_return_refs_distinct():
    @ray.remote(num_returns=2)
    def two():
        return 1, 2

    a, b = two.remote()
    refs = [echo.remote(i) for i in range(50)] + [a, b]
    assert len({r.hex() for r in refs}) == len(refs)
    assert ray.get([a, b]) == [1, 2]


def test_object_ref_pickles_to_an_equal_ref():
    r = ray.put({"k": "v"})
    copy = pickle.loads(pickle.dumps(r))
    assert copy == r and copy.hex() == r.hex()
    assert ray.get(copy) == {"k": "v"}


# ============================================================================ nested refs
@ray.remote
def describe_and_resolve(items):
    return [type(x).__name__ for x in items], ray.get(items)


def test_refs_inside_list_argument_arrive_as_refs():
    refs = [ray.put(i) for i in range(3)] + [echo.remote(10), ray.put(b"b" * 200_000)]
    kinds, values = ray.get(describe_and_resolve.remote(refs))
    assert kinds == ["ObjectRef"] * 5
    assert values == [0, 1, 2, 10, b"b" * 200_000]


def test_refs_inside_dict_argument():
    @ray.remote
    def resolve(d):
        return {k: ray.get(v) for k, v in d.items()}

    assert ray.get(resolve.remote({"a": ray.put(1), "b": echo.remote(2)})) == {"a": 1, "b": 2}


@ray.remote
def make_ref(value):
    return ray.put(value)


def test_task_returning_ref_created_inside_it():
    outer = make_ref.remote("made in a worker")
    inner = ray.get(outer)
    assert isinstance(inner, ray.ObjectRef)
    assert ray.get(inner, timeout=POLL_DEADLINE_S) == "made in a worker"


def test_task_returning_large_ref_created_inside_it():
    arr = np.arange(500_000, dtype=np.int64)  # 4 MB: stored in the shared-memory store
    inner = ray.get(make_ref.remote(arr))
    assert isinstance(inner, ray.ObjectRef)
    out = ray.get(inner, timeout=POLL_DEADLINE_S)
    np.testing.assert_array_equal(out, arr)
    assert not out.flags.writeable


def test_ref_created_in_task_passed_to_another_task():
    inner = ray.get(make_ref.remote([1, 2, 3]))
    assert ray.get(echo.remote(inner)) == [1, 2, 3]  # top-level ref argument: resolved to its value
    kinds, values = ray.get(describe_and_resolve.remote([inner]))
    assert kinds == ["ObjectRef"] and values == [[1, 2, 3]]


# ============================================================================ numpy
def test_arrays_from_get_are_read_only():
    small = ray.get(ray.put(np.arange(3)))
    big = ray.get(ray.put(np.arange(1_000_000)))
    nested = ray.get(ray.put({"a": [np.ones(4)], "b": (np.zeros((2, 2)),)}))
    returned_small = ray.get(echo.remote(np.arange(5)))
    returned_big = ray.get(echo.remote(np.arange(300_000)))
    for arr in (small, big, nested["a"][0], nested["b"][0], returned_small, returned_big):
        assert isinstance(arr, np.ndarray)
        assert not arr.flags.writeable
        with pytest.raises(ValueError):
            arr[0] = 7
    np.testing.assert_array_equal(small, np.arange(3))
    np.testing.assert_array_equal(returned_big, np.arange(300_000))


def test_large_array_get_is_zero_copy_and_put_snapshots():
    arr = np.arange(50 * 2**20 // 8, dtype=np.float64)  # 50 MB
    expected_head = arr[:4].copy()
    ref = ray.put(arr)
    arr[:4] = -1.0  # mutating the original after put does not change the stored value
    v1 = ray.get(ref)
    v2 = ray.get(ref)
    assert v1.nbytes == 50 * 2**20
    assert np.shares_memory(v1, v2)
    assert not np.shares_memory(v1, arr)
    assert not v1.flags.writeable and not v2.flags.writeable
    np.testing.assert_array_equal(v1[:4], expected_head)
    assert v1[-1] == arr[-1]
    assert np.array_equal(v1[4:], arr[4:])
    del v1, v2


def test_large_task_return_is_zero_copy():
    @ray.remote
    def make(n):
        return np.full(n, 7, dtype=np.uint8)

    ref = make.remote(20 * 2**20)
    v1, v2 = ray.get(ref), ray.get(ref)
    assert np.shares_memory(v1, v2)
    assert not v1.flags.writeable
    assert v1.shape == (20 * 2**20,) and int(v1[123]) == 7


# ============================================================================ freeing
def test_put_object_segment_freed_after_refs_dropped():
    ref = ray.put(np.ones(2 * 2**20))  # 16 MB
    oid_hex = ref.hex()
    assert len(_segments_of(oid_hex)) == 1, "a large put lives in one /dev/shm segment named by its id"
    value = ray.get(ref)  # a live zero-copy view must not keep the segment name alive
    del ref
    gc.collect()
    _poll(lambda: not _segments_of(oid_hex), f"segment of {oid_hex} to be unlinked")
    assert float(value[0]) == 1.0  # the mapping stays valid after the unlink
    del value


def test_task_return_segment_freed_after_refs_dropped():
    @ray.remote
    def make():
        return np.zeros(4 * 2**20, dtype=np.uint8)

    ref = make.remote()
    ray.get(ref)
    oid_hex = ref.hex()
    assert len(_segments_of(oid_hex)) == 1
    del ref
    gc.collect()
    _poll(lambda: not _segments_of(oid_hex), f"segment of {oid_hex} to be unlinked")


def test_segment_kept_while_a_ref_remains():
    ref = ray.put(np.ones(2**20))
    copy = ray.get(ray.put([ref]))[0]  # a second instance of the same ref
    oid_hex = ref.hex()
    del ref
    gc.collect()
    # The object is still referenced: it must stay readable.
    assert float(ray.get(copy, timeout=POLL_DEADLINE_S)[0]) == 1.0
    assert len(_segments_of(oid_hex)) == 1


def test_many_puts_freed_do_not_accumulate():
    hexes = []
    for _ in range(20):
        r = ray.put(np.zeros(2**20, dtype=np.uint8))
        hexes.append(r.hex())
        del r
    gc.collect()
    _poll(lambda: not any(_segments_of(h) for h in hexes), "all put segments to be unlinked")


# ============================================================================ stored returns of failed/retried tasks
# Regressions: a later return that failed to store used to leave the earlier returns' segments in the
# store for good, and a retry used to fail with FileExistsError on its first attempt's segment.
def test_failed_multi_return_task_frees_returns_already_stored():
    @ray.remote(num_returns=2)
    def first_big_second_unpicklable():
        return np.ones(2**20), threading.Lock()

    a, b = first_big_second_unpicklable.remote()
    for r in (a, b):
        with pytest.raises(exc.RayTaskError):
            ray.get(r, timeout=POLL_DEADLINE_S)
    first_hex = a.hex()
    del a, b, r
    gc.collect()
    _poll(lambda: not _segments_of(first_hex), f"segment of the first return {first_hex} to be unlinked",
          timeout=10.0)


def test_retried_multi_return_task_can_store_its_returns_again(tmp_path):
    marker = tmp_path / "attempted"

    @ray.remote(num_returns=2, max_retries=1, retry_exceptions=True)
    def flaky_second_return(path):
        first_attempt = not os.path.exists(path)
        _open(path)
        return np.ones(2**20), (threading.Lock() if first_attempt else "ok")

    a, b = flaky_second_return.remote(str(marker))
    assert ray.get(b, timeout=POLL_DEADLINE_S) == "ok"
    np.testing.assert_array_equal(ray.get(a, timeout=POLL_DEADLINE_S), np.ones(2**20))


# ============================================================================ freeing nested refs
def test_nested_ref_kept_by_its_container_then_freed():
    inner = ray.put(np.ones(2**20))
    inner_hex = inner.hex()
    outer = ray.put([inner])
    del inner
    gc.collect()
    # The container still holds the ref: the value stays readable through it.
    got = ray.get(outer)[0]
    assert float(ray.get(got, timeout=POLL_DEADLINE_S)[0]) == 1.0
    assert len(_segments_of(inner_hex)) == 1
    del got, outer
    gc.collect()
    _poll(lambda: not _segments_of(inner_hex), f"segment of {inner_hex} to be unlinked after its container")


def test_ref_in_list_argument_freed_after_task_and_driver_drop():
    ref = ray.put(np.ones(2**20))
    oid_hex = ref.hex()
    kinds, values = ray.get(describe_and_resolve.remote([ref]))
    assert kinds == ["ObjectRef"] and float(values[0][0]) == 1.0
    del ref, values
    gc.collect()
    _poll(lambda: not _segments_of(oid_hex), f"segment of {oid_hex} to be unlinked after the task borrowed it")


@ray.remote
def gated_first_value(path, items, deadline_s=60.0):
    wait_for_file(path, deadline_s)
    return float(ray.get(items[0])[0])


def test_ref_in_argument_survives_driver_drop_while_task_runs(tmp_path):
    gate = tmp_path / "gate"
    ref = ray.put(np.full(2**20, 5.0))
    oid_hex = ref.hex()
    out = gated_first_value.remote(str(gate), [ref])
    try:
        del ref
        gc.collect()
    finally:
        _open(gate)
    assert ray.get(out, timeout=POLL_DEADLINE_S) == 5.0
    del out
    gc.collect()
    _poll(lambda: not _segments_of(oid_hex), f"segment of {oid_hex} to be unlinked")


def test_worker_owned_ref_freed_after_driver_drops_it():
    outer = make_ref.remote(np.ones(2**20))
    inner = ray.get(outer)
    inner_hex = inner.hex()
    assert float(ray.get(inner, timeout=POLL_DEADLINE_S)[0]) == 1.0
    assert len(_segments_of(inner_hex)) == 1
    del inner
    gc.collect()
    # The task's return value (held by `outer`) still contains the ref.
    again = ray.get(outer)
    assert float(ray.get(again, timeout=POLL_DEADLINE_S)[0]) == 1.0
    del again, outer
    gc.collect()
    _poll(lambda: not _segments_of(inner_hex), f"segment of the worker-owned {inner_hex} to be unlinked")
