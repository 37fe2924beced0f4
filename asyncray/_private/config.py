"""Every tunable of the runtime in one frozen record, with ASYNCRAY_* environment overrides.

Tests shorten timeouts by building a Config with `replace()`; processes receive the
driver's config as a dict so that a whole cluster runs with one set of values.
"""
from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, fields

INLINE_LIMIT = 100 * 1024


@dataclass(frozen=True)
class Config:
    # Serialised values above this many bytes live in the shared-memory store.
    inline_limit: int = INLINE_LIMIT
    # How long an owner keeps an idle leased worker before returning it (s).
    lease_linger_s: float = 0.05
    # Tasks pushed to one leased worker before waiting for replies.
    lease_pipeline_depth: int = 16
    # Leases one owner may hold at once for one resource shape.
    max_leases_per_shape: int = 64
    # Idle workers above the CPU count are reaped after this long (s).
    idle_worker_timeout_s: float = 10.0
    # Deadline for a child process to report ready at start-up (s).
    startup_timeout_s: float = 20.0
    # An async actor's loop blocked longer than this by one call is reported (0: off).
    blocked_loop_report_s: float = 0.5
    # Deadline for a head to answer a driver joining it (s).
    connect_timeout_s: float = 10.0
    # SIGTERM -> SIGKILL grace when stopping a process (s).
    stop_grace_s: float = 2.0
    # Root of session directories (sockets, logs, snapshot).
    temp_dir: str = "/tmp/asyncray"

    @classmethod
    def from_env(cls, **overrides: object) -> "Config":
        values: dict[str, object] = {}
        for f in fields(cls):
            env = os.environ.get("ASYNCRAY_" + f.name.upper())
            if env is not None:
                values[f.name] = type(f.default)(env)
        values.update(overrides)
        return cls(**values)  # type: ignore[arg-type]

    def to_dict(self) -> dict[str, object]:
        return dataclasses.asdict(self)
