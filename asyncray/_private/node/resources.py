"""Resource arithmetic in fixed point: 1 unit = 1/10,000 of a resource, as Ray's precision.

Pure: no I/O. A shape is what one lease or task needs ({"CPU": 1.0}); a ResourcePool is what a
node has and what is free.
"""
from __future__ import annotations

SCALE = 10_000


def to_units(shape: dict[str, float]) -> dict[str, int]:
    return {k: round(v * SCALE) for k, v in shape.items() if v}


def from_units(units: dict[str, int]) -> dict[str, float]:
    return {k: v / SCALE for k, v in units.items()}


def fits(have: dict[str, int], need: dict[str, int]) -> bool:
    """Whether `have` holds at least `need` of every resource `need` names."""
    for k, v in need.items():
        if have.get(k, 0) < v:
            return False
    return True


class ResourcePool:
    def __init__(self, total: dict[str, float]) -> None:
        self.total = to_units(total)
        self.free = dict(self.total)

    def feasible(self, need: dict[str, int]) -> bool:
        """Could this ever fit on the node (ignoring what is in use)?"""
        return fits(self.total, need)

    def fits(self, need: dict[str, int]) -> bool:
        return fits(self.free, need)

    def acquire(self, need: dict[str, int]) -> None:
        free = self.free
        for k, v in need.items():
            free[k] = free.get(k, 0) - v

    def release(self, need: dict[str, int]) -> None:
        free, total = self.free, self.total
        for k, v in need.items():
            if k in total:  # a removed bundle's resources are gone, not returned
                free[k] = free.get(k, 0) + v

    def grow(self, extra: dict[str, int]) -> None:
        """New resources (a reserved bundle's), all free."""
        for k, v in extra.items():
            self.total[k] = self.total.get(k, 0) + v
            self.free[k] = self.free.get(k, 0) + v

    def shrink(self, gone: dict[str, int]) -> None:
        """Resources taken away (a released bundle's); a resource left with none disappears."""
        for k, v in gone.items():
            left = self.total.get(k, 0) - v
            if left <= 0:
                self.total.pop(k, None)
                self.free.pop(k, None)
            else:
                self.total[k] = left
                self.free[k] = self.free.get(k, 0) - v

    def missing(self, need: dict[str, int]) -> dict[str, float]:
        return {k: v / SCALE for k, v in need.items() if self.total.get(k, 0) < v}

    def snapshot(self) -> tuple[dict[str, float], dict[str, float]]:
        return from_units(self.total), from_units({k: max(v, 0) for k, v in self.free.items()})
