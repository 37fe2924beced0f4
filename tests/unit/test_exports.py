"""The public surface: exactly these names, each resolving, with Ray's spelling."""
from __future__ import annotations

import asyncray

EXPECTED = {
    "ObjectRef", "ObjectRefGenerator", "available_resources", "cancel", "cluster_resources", "exceptions", "get",
    "get_async", "get_runtime_context", "init", "is_initialized", "put", "remote", "shutdown", "wait", "wait_async",
    "actor", "get_actor", "kill", "method", "util", "get_gpu_ids", "nodes",
}


def test_all_is_exactly_the_public_names():
    assert set(asyncray.__all__) == EXPECTED


def test_every_public_name_resolves():
    for name in asyncray.__all__:
        assert getattr(asyncray, name) is not None
    assert set(EXPECTED) <= set(dir(asyncray))


def test_unknown_attribute_is_an_attribute_error():
    import pytest

    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        asyncray.nope  # noqa: B018


def test_exceptions_live_at_their_public_path():
    # They cross processes by pickle: their module must be the public one.
    for name in ("RayError", "RayTaskError", "GetTimeoutError", "TaskCancelledError", "WorkerCrashedError"):
        assert getattr(asyncray.exceptions, name).__module__ == "asyncray.exceptions"
    assert issubclass(asyncray.exceptions.GetTimeoutError, TimeoutError)
