"""Unit tests for asyncray._private.options: the option table and its helpers."""

from __future__ import annotations

import ast
import os
import pathlib
import warnings

import pytest

from asyncray._private import options as opts
from asyncray._private.options import (
    ACTOR_DEFAULTS,
    METHOD_DEFAULTS,
    TASK_DEFAULTS,
    actor_resources,
    effective_max_calls,
    merge_options,
    resolve_num_returns,
    task_resources,
    validate_actor_options,
    validate_method_options,
    validate_runtime_env,
    validate_task_options,
)


class PlacementGroupSchedulingStrategy:  # stand-ins recognised by class name
    pass


class NodeAffinitySchedulingStrategy:
    pass


class MyStrategy(NodeAffinitySchedulingStrategy):
    pass


class PlacementGroup:
    pass


def task_ok(**o):
    validate_task_options(o, in_options=False)


def actor_ok(**o):
    validate_actor_options(o, in_options=False)


# ---------------------------------------------------------------------------
# Module hygiene and table consistency
# ---------------------------------------------------------------------------


def test_module_imports_only_stdlib():
    tree = ast.parse(open(opts.__file__, encoding="utf-8").read())
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            assert node.level == 0
            assert node.module.split(".")[0] in {"__future__", "dataclasses", "typing"}
        elif isinstance(node, ast.Import):
            for alias in node.names:
                assert alias.name in {"math", "os", "warnings"}


def test_defaults_follow_ray():
    assert TASK_DEFAULTS["num_cpus"] == 1
    assert TASK_DEFAULTS["num_gpus"] is None
    assert TASK_DEFAULTS["num_returns"] == 1
    assert TASK_DEFAULTS["max_retries"] == 3
    assert TASK_DEFAULTS["retry_exceptions"] is False
    assert TASK_DEFAULTS["max_calls"] == 0
    assert TASK_DEFAULTS["placement_group"] == "default"
    assert TASK_DEFAULTS["placement_group_bundle_index"] == -1
    assert TASK_DEFAULTS["enable_task_events"] is True
    assert TASK_DEFAULTS["runtime_env"] is None
    assert ACTOR_DEFAULTS["num_cpus"] is None
    assert ACTOR_DEFAULTS["max_restarts"] == 0
    assert ACTOR_DEFAULTS["max_task_retries"] == 0
    assert ACTOR_DEFAULTS["max_pending_calls"] == -1
    assert ACTOR_DEFAULTS["max_concurrency"] is None
    assert ACTOR_DEFAULTS["lifetime"] is None
    assert ACTOR_DEFAULTS["get_if_exists"] is False
    assert "max_retries" not in ACTOR_DEFAULTS and "num_returns" not in ACTOR_DEFAULTS
    assert "max_restarts" not in TASK_DEFAULTS
    assert METHOD_DEFAULTS == {k: None for k in METHOD_DEFAULTS}
    assert set(METHOD_DEFAULTS) == {
        "name", "num_returns", "concurrency_group", "max_task_retries",
        "retry_exceptions", "_generator_backpressure_num_objects", "enable_task_events",
    }


def test_defaults_validate_cleanly():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        validate_task_options(dict(TASK_DEFAULTS), in_options=False)
        validate_actor_options(dict(ACTOR_DEFAULTS), in_options=False)
        validate_method_options(dict(METHOD_DEFAULTS))


def test_table_is_single_source():
    assert set(TASK_DEFAULTS) == set(opts.task_option_names())
    assert set(ACTOR_DEFAULTS) == set(opts.actor_option_names())
    assert set(METHOD_DEFAULTS) == set(opts.method_option_names())
    for name, option in opts.OPTIONS.items():
        assert option.name == name
        assert option.kinds and option.kinds <= {"task", "actor", "method"}
        assert option.doc


# ---------------------------------------------------------------------------
# Unknown keywords
# ---------------------------------------------------------------------------


def test_unknown_task_keyword_lists_valid_ones():
    with pytest.raises(ValueError) as info:
        task_ok(num_cpu=1)
    msg = str(info.value)
    assert msg.startswith("Invalid option keyword num_cpu for remote functions.")
    assert "Valid ones are [" in msg and "'num_cpus'" in msg and "'max_retries'" in msg


@pytest.mark.parametrize("key", ["max_restarts", "max_task_retries", "lifetime",
                                 "max_concurrency", "namespace", "get_if_exists",
                                 "concurrency_groups", "max_pending_calls",
                                 "concurrency_group"])
def test_actor_or_method_only_option_on_task(key):
    with pytest.raises(ValueError, match=f"Invalid option keyword {key} for remote functions"):
        task_ok(**{key: 1})


@pytest.mark.parametrize("key", ["max_retries", "num_returns", "retry_exceptions",
                                 "max_calls", "_generator_backpressure_num_objects",
                                 "concurrency_group", "bogus"])
def test_task_or_method_only_option_on_actor(key):
    with pytest.raises(ValueError, match=f"Invalid option keyword {key} for actors"):
        actor_ok(**{key: 1})


def test_wrong_kind_hints():
    with pytest.raises(ValueError, match="only applies to actors"):
        task_ok(max_restarts=1)
    with pytest.raises(ValueError, match="max_task_retries"):
        actor_ok(max_retries=1)
    with pytest.raises(ValueError, match=r"@ray.method\(num_returns"):
        actor_ok(num_returns=2)
    with pytest.raises(ValueError, match="set it on the actor class"):
        validate_method_options({"num_cpus": 1})
    with pytest.raises(ValueError, match="Invalid option keyword foo for actor methods"):
        validate_method_options({"foo": 1})


def test_options_must_be_a_mapping():
    with pytest.raises(TypeError, match="must be a dict"):
        validate_task_options([("num_cpus", 1)], in_options=False)


# ---------------------------------------------------------------------------
# Types and values
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("key,value", [
    ("num_cpus", "1"), ("num_cpus", True), ("num_gpus", [1]), ("memory", "1GB"),
    ("max_retries", 1.5), ("max_retries", False), ("max_calls", "0"),
    ("num_returns", 2.0), ("num_returns", True), ("retry_exceptions", "yes"),
    ("resources", [("a", 1)]), ("runtime_env", "env"), ("name", 3),
    ("accelerator_type", 1), ("enable_task_events", 1), ("scheduling_strategy", 3),
    ("scheduling_strategy", object()), ("placement_group_bundle_index", None),
    ("_metadata", []), ("label_selector", "x"),
])
def test_task_type_errors_name_option_and_value(key, value):
    with pytest.raises(TypeError) as info:
        task_ok(**{key: value})
    msg = str(info.value)
    assert f"'{key}'" in msg
    assert repr(value)[:20] in msg or type(value).__name__ in msg
    assert "must be" in msg


@pytest.mark.parametrize("key,value", [
    ("max_concurrency", "4"), ("max_restarts", 1.0), ("lifetime", 1),
    ("get_if_exists", None), ("concurrency_groups", ["io"]), ("namespace", 1),
    ("max_pending_calls", True), ("object_store_memory", 1.5),
])
def test_actor_type_errors(key, value):
    with pytest.raises(TypeError, match=f"'{key}'"):
        actor_ok(**{key: value})


@pytest.mark.parametrize("key", ["num_cpus", "num_gpus", "memory"])
@pytest.mark.parametrize("validate", [task_ok, actor_ok])
def test_resource_values(key, validate):
    for good in (0, 0.0, 0.0001, 0.00015, 0.5, 1, 2.5, 1000, None):
        validate(**{key: good})
    with pytest.raises(ValueError, match=f"{key} cannot be negative, got -1"):
        validate(**{key: -1})
    with pytest.raises(ValueError, match=f"resource {key} cannot go beyond 0.0001"):
        validate(**{key: 0.00001})
    with pytest.raises(ValueError, match="finite"):
        validate(**{key: float("inf")})
    with pytest.raises(ValueError, match="finite"):
        validate(**{key: float("nan")})


def test_resources_dict():
    task_ok(resources={"custom": 1, "frac": 0.25, "zero": 0})
    actor_ok(resources={"custom": 2})
    for key in ("CPU", "GPU"):
        with pytest.raises(ValueError, match="Use the 'num_cpus' and 'num_gpus' keyword"):
            task_ok(resources={key: 1})
        with pytest.raises(ValueError, match="instead of 'CPU' and 'GPU'"):
            actor_ok(resources={key: 1})
    with pytest.raises(ValueError, match="Use the 'memory' keyword"):
        task_ok(resources={"memory": 100})
    with pytest.raises(ValueError, match="resource custom cannot be negative"):
        task_ok(resources={"custom": -0.5})
    with pytest.raises(ValueError, match="resource custom cannot go beyond 0.0001"):
        task_ok(resources={"custom": 0.00005})
    with pytest.raises(TypeError, match="resource 'custom' in 'resources' must be an int"):
        task_ok(resources={"custom": "1"})
    with pytest.raises(TypeError, match="resource 'custom'"):
        task_ok(resources={"custom": True})
    with pytest.raises(ValueError, match="non-empty strings"):
        task_ok(resources={1: 1})


def test_num_returns():
    for good in (0, 1, 5, "streaming", "dynamic", None):
        task_ok(num_returns=good)
        validate_method_options({"num_returns": good})
    for bad in (-1, "many", "STREAMING"):
        with pytest.raises(ValueError, match="'num_returns' only accepts"):
            task_ok(num_returns=bad)
        with pytest.raises(ValueError, match=repr(bad)):
            validate_method_options({"num_returns": bad})


def test_counting_options():
    for good in (-1, 0, 1, 100, None):
        task_ok(max_retries=good)
        actor_ok(max_restarts=good, max_task_retries=good, max_pending_calls=good)
    with pytest.raises(ValueError, match=r"'max_retries' only accepts None, 0, -1 .* Got -2"):
        task_ok(max_retries=-2)
    with pytest.raises(ValueError, match="'max_restarts'.*-5"):
        actor_ok(max_restarts=-5)
    with pytest.raises(ValueError, match="'max_calls' only accepts None, 0 or a positive"):
        task_ok(max_calls=-1)
    task_ok(max_calls=0)
    task_ok(max_calls=10)


def test_retry_exceptions():
    for good in (True, False, [ValueError], (KeyError, OSError), []):
        task_ok(retry_exceptions=good)
        validate_method_options({"retry_exceptions": good})
    for bad in ([ValueError, "KeyError"], [ValueError()], [BaseException], [int]):
        with pytest.raises(ValueError, match="retry_exceptions must be either a boolean"):
            task_ok(retry_exceptions=bad)


def test_generator_backpressure():
    task_ok(_generator_backpressure_num_objects=-1)
    task_ok(_generator_backpressure_num_objects=1)
    for bad in (0, -2):
        with pytest.raises(ValueError, match="_generator_backpressure_num_objects"):
            task_ok(_generator_backpressure_num_objects=bad)


def test_max_calls_not_in_options():
    validate_task_options({"max_calls": 1}, in_options=False)
    with pytest.raises(ValueError, match="Setting 'max_calls' is not supported in '.options"):
        validate_task_options({"max_calls": 1}, in_options=True)
    validate_task_options({"num_cpus": 2}, in_options=True)


def test_scheduling_strategy():
    for good in (None, "DEFAULT", "SPREAD", PlacementGroupSchedulingStrategy(),
                 NodeAffinitySchedulingStrategy(), MyStrategy()):
        task_ok(scheduling_strategy=good)
        actor_ok(scheduling_strategy=good)
    with pytest.raises(ValueError, match="'scheduling_strategy' only accepts None, 'DEFAULT'"):
        task_ok(scheduling_strategy="spread")
    with pytest.raises(TypeError, match="SchedulingStrategy"):
        actor_ok(scheduling_strategy=object())


def test_deprecated_placement_group_options():
    with pytest.warns(DeprecationWarning, match="placement_group parameter is deprecated"):
        task_ok(placement_group=PlacementGroup())
    with pytest.warns(DeprecationWarning, match="placement_group_bundle_index"):
        actor_ok(placement_group_bundle_index=0)
    with pytest.raises(ValueError, match="placement_group_bundle_index"):
        task_ok(placement_group_bundle_index=-2)
    with pytest.raises(ValueError, match="scheduling_strategy option"):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            task_ok(placement_group=PlacementGroup(), scheduling_strategy="SPREAD")
    with pytest.raises(ValueError, match="'placement_group' only accepts"):
        task_ok(placement_group="mine")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        task_ok(placement_group=None, scheduling_strategy="SPREAD")
        task_ok(placement_group="default")


def test_str_dict_options():
    task_ok(_labels={"a": "b"}, label_selector={"zone": "us"})
    with pytest.raises(ValueError, match="'label_selector' must be a dict of str to str"):
        task_ok(label_selector={"zone": 1})


def test_object_store_memory():
    task_ok(object_store_memory=None)
    with pytest.raises(ValueError, match="not implemented for tasks"):
        task_ok(object_store_memory=100)
    with pytest.warns(DeprecationWarning, match="object_store_memory"):
        actor_ok(object_store_memory=100)
    with pytest.raises(ValueError, match="object_store_memory"):
        actor_ok(object_store_memory=-1)


# ---------------------------------------------------------------------------
# Actor-specific checks
# ---------------------------------------------------------------------------


def test_actor_lifetime():
    for good in (None, "detached", "non_detached"):
        actor_ok(lifetime=good)
    with pytest.raises(ValueError, match="actor `lifetime` argument must be one of.*'forever'"):
        actor_ok(lifetime="forever")


def test_actor_get_if_exists_needs_name():
    actor_ok(get_if_exists=True, name="a")
    actor_ok(get_if_exists=False)
    with pytest.raises(ValueError, match="name must be specified to use `get_if_exists`"):
        actor_ok(get_if_exists=True)
    with pytest.raises(ValueError, match="get_if_exists"):
        validate_actor_options({"get_if_exists": True, "name": None}, in_options=True)


def test_actor_names():
    actor_ok(name="x", namespace="ns")
    with pytest.raises(ValueError, match="Actor name cannot be an empty string"):
        actor_ok(name="")
    with pytest.raises(ValueError, match="not a valid namespace"):
        actor_ok(namespace="")
    task_ok(name="")  # task names are display only


def test_actor_concurrency():
    actor_ok(max_concurrency=1)
    actor_ok(max_concurrency=1000)
    with pytest.raises(ValueError, match="'max_concurrency' only accepts None or an integer >= 1, got 0"):
        actor_ok(max_concurrency=0)
    actor_ok(concurrency_groups={"io": 2, "compute": 4})
    with pytest.raises(ValueError, match=r"concurrency_groups\['io'\] must be an integer >= 1"):
        actor_ok(concurrency_groups={"io": 0})
    with pytest.raises(ValueError, match="concurrency_groups keys"):
        actor_ok(concurrency_groups={"": 1})
    with pytest.raises(ValueError, match="'concurrency_groups' is not supported in '.options"):
        validate_actor_options({"concurrency_groups": {"io": 1}}, in_options=True)


def test_max_task_retries_allowed_without_max_restarts():
    # Ray >= 2.10 dropped the "max_task_retries needs max_restarts" check.
    actor_ok(max_task_retries=2)


# ---------------------------------------------------------------------------
# Method options
# ---------------------------------------------------------------------------


def test_method_options():
    validate_method_options({
        "num_returns": 2, "concurrency_group": "io", "max_task_retries": -1,
        "retry_exceptions": [ValueError], "name": "m", "enable_task_events": False,
        "_generator_backpressure_num_objects": 4,
    })
    validate_method_options({})
    with pytest.raises(ValueError, match="'max_task_retries'"):
        validate_method_options({"max_task_retries": -2})
    with pytest.raises(TypeError, match="'concurrency_group' must be str or None"):
        validate_method_options({"concurrency_group": 1})
    with pytest.raises(ValueError, match="Invalid option keyword max_retries for actor methods"):
        validate_method_options({"max_retries": 1})


# ---------------------------------------------------------------------------
# runtime_env
# ---------------------------------------------------------------------------


def test_runtime_env_empty():
    assert validate_runtime_env(None) is None
    assert validate_runtime_env({}) == {}
    task_ok(runtime_env=None)
    task_ok(runtime_env={})


def test_runtime_env_must_be_dict():
    with pytest.raises(TypeError, match="runtime_env must be a dict"):
        validate_runtime_env(["env_vars"])


def test_runtime_env_env_vars():
    env = {"env_vars": {"A": "1", "B": ""}}
    out = validate_runtime_env(env)
    assert out == env and out is not env and out["env_vars"] is not env["env_vars"]
    with pytest.raises(TypeError, match="the value of 'A' is 1 .int., not a str"):
        validate_runtime_env({"env_vars": {"A": 1}})
    with pytest.raises(TypeError, match="key 5 is a int"):
        validate_runtime_env({"env_vars": {5: "x"}})
    with pytest.raises(TypeError, match=r"Dict\[str, str\], got list"):
        validate_runtime_env({"env_vars": ["A=1"]})
    with pytest.raises(TypeError, match="env_vars"):
        task_ok(runtime_env={"env_vars": {"A": None}})
    assert validate_runtime_env({"env_vars": None}) == {}


def test_runtime_env_working_dir(tmp_path, monkeypatch):
    out = validate_runtime_env({"working_dir": str(tmp_path)})
    assert out == {"working_dir": str(tmp_path)}
    monkeypatch.chdir(tmp_path)
    (tmp_path / "sub").mkdir()
    out = validate_runtime_env({"working_dir": "sub", "env_vars": {"X": "y"}})
    assert out["working_dir"] == os.path.join(str(tmp_path), "sub")
    assert os.path.isabs(out["working_dir"])
    assert validate_runtime_env({"working_dir": pathlib.Path("sub")})["working_dir"] == out["working_dir"]
    assert validate_runtime_env({"working_dir": "."})["working_dir"] == str(tmp_path)

    missing = str(tmp_path / "missing")
    with pytest.raises(ValueError, match="missing.*does not exist"):
        validate_runtime_env({"working_dir": missing})
    (tmp_path / "f.zip").write_bytes(b"")
    with pytest.raises(ValueError, match="is not a directory"):
        validate_runtime_env({"working_dir": str(tmp_path / "f.zip")})
    with pytest.raises(ValueError, match="remote URI"):
        validate_runtime_env({"working_dir": "s3://bucket/code.zip"})
    with pytest.raises(TypeError, match="working_dir"):
        validate_runtime_env({"working_dir": 3})
    with pytest.raises(ValueError, match="does not exist"):
        actor_ok(runtime_env={"working_dir": missing})


@pytest.mark.parametrize("key", ["pip", "conda", "uv", "container", "image_uri",
                                 "py_modules", "py_executable", "excludes", "config",
                                 "nsight", "java_jars", "worker_process_setup_hook"])
def test_runtime_env_unsupported_keys(key):
    with pytest.raises(ValueError) as info:
        validate_runtime_env({key: ["x"]})
    msg = str(info.value)
    assert f"runtime_env key '{key}' is not supported by asyncray yet." in msg
    assert "Supported keys: ['env_vars', 'working_dir']" in msg
    with pytest.raises(ValueError, match="not supported by asyncray yet"):
        task_ok(runtime_env={key: ["x"]})


def test_runtime_env_unknown_key():
    with pytest.raises(ValueError, match="Unknown runtime_env key 'envvars'"):
        validate_runtime_env({"envvars": {}})


# ---------------------------------------------------------------------------
# merge_options
# ---------------------------------------------------------------------------


def test_merge_options():
    base = {"num_cpus": 1, "runtime_env": {"env_vars": {"A": "1"}, "working_dir": "/x"},
            "_metadata": {"ns1": {"a": 1}, "ns2": {"b": 2}}}
    override = {"num_cpus": 2, "runtime_env": {"env_vars": {"B": "2"}},
                "_metadata": {"ns1": {"c": 3}}, "name": "n"}
    base_copy = {k: (dict(v) if isinstance(v, dict) else v) for k, v in base.items()}
    merged = merge_options(base, override)
    assert merged["num_cpus"] == 2 and merged["name"] == "n"
    assert merged["runtime_env"] == {"env_vars": {"B": "2"}}
    assert merged["_metadata"] == {"ns1": {"a": 1, "c": 3}, "ns2": {"b": 2}}
    assert base == base_copy
    assert merged is not base and merged is not override
    assert merge_options(TASK_DEFAULTS, {})["max_retries"] == 3
    assert merge_options({}, {"x": None}) == {"x": None}


# ---------------------------------------------------------------------------
# Resources
# ---------------------------------------------------------------------------


def test_task_resources():
    assert task_resources({}) == {"CPU": 1}
    assert task_resources(TASK_DEFAULTS) == {"CPU": 1}
    assert task_resources({"num_cpus": None}) == {"CPU": 1}
    assert task_resources({"num_cpus": 0}) == {}
    assert task_resources({"num_cpus": 0.5, "num_gpus": 1}) == {"CPU": 0.5, "GPU": 1}
    assert task_resources({"num_gpus": 0}) == {"CPU": 1}
    assert task_resources({"memory": 1024.0}) == {"CPU": 1, "memory": 1024}
    assert task_resources({"resources": {"a": 2, "z": 0}}) == {"CPU": 1, "a": 2}
    assert task_resources({"accelerator_type": "A100"}) == {
        "CPU": 1, "accelerator_type:A100": 0.001}


def test_actor_resources_default_rule():
    # Nothing specified: needs 1 CPU to be placed, holds nothing while alive.
    assert actor_resources({}) == ({"CPU": 1}, {})
    assert actor_resources(ACTOR_DEFAULTS) == ({"CPU": 1}, {})
    # memory alone does not count as "specified" (Ray quirk kept).
    assert actor_resources({"memory": 100}) == ({"CPU": 1, "memory": 100}, {"memory": 100})


def test_actor_resources_specified():
    assert actor_resources({"num_cpus": 2}) == ({"CPU": 2}, {"CPU": 2})
    assert actor_resources({"num_cpus": 0}) == ({}, {})
    # Any resource given -> CPU defaults to 1 and is held for the lifetime.
    assert actor_resources({"num_gpus": 1}) == ({"CPU": 1, "GPU": 1}, {"CPU": 1, "GPU": 1})
    assert actor_resources({"num_gpus": 0}) == ({"CPU": 1}, {"CPU": 1})
    assert actor_resources({"resources": {"r": 1}}) == ({"CPU": 1, "r": 1}, {"CPU": 1, "r": 1})
    assert actor_resources({"num_cpus": 0, "num_gpus": 0.5}) == ({"GPU": 0.5}, {"GPU": 0.5})
    placement, held = actor_resources({"num_cpus": 1})
    assert placement is not held


def test_effective_max_calls():
    assert effective_max_calls({}) == 0
    assert effective_max_calls({"num_gpus": 1}) == 1
    assert effective_max_calls({"num_gpus": 0.5}) == 1
    assert effective_max_calls({"num_gpus": 0}) == 0
    assert effective_max_calls({"num_gpus": None}) == 0
    assert effective_max_calls({"num_gpus": 1, "max_calls": 0}) == 0
    assert effective_max_calls({"num_gpus": 1, "max_calls": 5}) == 5
    assert effective_max_calls({"max_calls": 3}) == 3


def test_resolve_num_returns():
    assert resolve_num_returns(None, is_generator=False) == 1
    assert resolve_num_returns(None, is_generator=True) == "streaming"
    assert resolve_num_returns(2, is_generator=True) == 2
    assert resolve_num_returns("dynamic", is_generator=True) == "dynamic"
