"""Which node a lease or an actor goes to: plain logic, events in, decisions out.

A ClusterView holds every node's total and free resources (fixed-point units, see
node/resources.py) and answers `pick(shape, strategy, local)` with a Decision. It keeps two
indexes so that a decision looks at a handful of nodes, not all of them:

- `_order`: the alive nodes sorted by (score, node id), where the score is Ray's critical
  resource utilisation (the highest used/total among CPU, memory and object_store_memory),
  counted as 0 below the spread threshold. The hybrid policy walks it from the front.
- `_having`: for every other resource (GPU, custom ones, a placement group's bundle
  resources), the set of alive nodes that have it. A shape that needs one only looks at the
  smallest such set, so `resources={"foo": 1}` on a 1,000-node cluster with 3 "foo" nodes
  checks 3 nodes.

Policies, after Ray's raylet (src/ray/raylet/scheduling/policy/):
- DEFAULT (hybrid): the local node while it fits and its score is as low as the best node's
  (so while it is under the spread threshold); otherwise a random pick, from a seeded
  generator, among the top-k least-loaded nodes that fit now (k = max(1, 20 % of the nodes)).
  Where Ray sorts every node to find the top k, we draw a position in the first k of the
  index and take the first node from there that fits: the same spread, without the sort.
  A shape without GPUs avoids GPU nodes while a non-GPU node fits. When no node fits now,
  the lease queues on the local node if it is as little loaded as the best feasible node,
  else on one of the k least-loaded feasible nodes.
- SPREAD: round-robin over the alive nodes from a rotating cursor; the first that fits now,
  else the first feasible.
- Node affinity: the named node if it is alive and could ever fit the shape; soft affinity
  falls back to DEFAULT otherwise (and, with spill_on_unavailable, also when the node is
  busy); hard affinity is then unschedulable, which the caller turns into
  TaskUnschedulableError / ActorUnschedulableError.
"""
from __future__ import annotations

import bisect
import random
from dataclasses import dataclass, field
from typing import NamedTuple, Optional

from asyncray._private.node.resources import fits

# Resources that decide a node's load score; every other one is indexed by who has it.
SCORED = ("CPU", "memory", "object_store_memory")
SPREAD_THRESHOLD = 0.5
TOP_K_FRACTION = 0.2
TOP_K_ABSOLUTE = 1


class NodeAffinity(NamedTuple):
    node_id: bytes
    soft: bool
    spill_on_unavailable: bool = False


SPREAD = "SPREAD"
DEFAULT = "DEFAULT"


class Decision(NamedTuple):
    """Where to go. `node_id` None: nowhere; then `infeasible` (no node could ever fit, wait
    for one to join) or `unschedulable` (a hard constraint failed: the reason, for the user)."""

    node_id: Optional[bytes]
    available: bool = False  # the node fits the shape now (else the lease queues there)
    infeasible: bool = False
    unschedulable: str = ""


@dataclass
class NodeResources:
    node_id: bytes
    total: dict[str, int]
    free: dict[str, int]
    score: float = 0.0
    has_gpu: bool = False
    extra: frozenset = field(default_factory=frozenset)  # resources indexed in _having


class ClusterView:
    def __init__(self, seed: int = 0, spread_threshold: float = SPREAD_THRESHOLD) -> None:
        self.nodes: dict[bytes, NodeResources] = {}
        self._order: list[tuple[float, bytes]] = []
        self._having: dict[str, set[bytes]] = {}
        self._ring: list[bytes] = []  # alive nodes in join order, for SPREAD
        self._cursor = 0
        self.rng = random.Random(seed)
        self.spread_threshold = spread_threshold

    # -- membership and resource updates ---------------------------------------------------
    def add_node(self, node_id: bytes, total: dict[str, int], free: Optional[dict[str, int]] = None) -> None:
        if node_id in self.nodes:
            self.remove_node(node_id)
        node = NodeResources(node_id, dict(total), dict(total if free is None else free))
        self.nodes[node_id] = node
        self._index(node)
        self._ring.append(node_id)

    def remove_node(self, node_id: bytes) -> None:
        node = self.nodes.pop(node_id, None)
        if node is None:
            return
        self._unindex(node)
        i = self._ring.index(node_id)
        del self._ring[i]
        if self._cursor > i:
            self._cursor -= 1

    def set_total(self, node_id: bytes, total: dict[str, int], free: dict[str, int]) -> None:
        """A node's resources changed shape (a placement group's bundle resources came or went)."""
        node = self.nodes[node_id]
        self._unindex(node)
        node.total, node.free = dict(total), dict(free)
        self._index(node)

    def set_free(self, node_id: bytes, free: dict[str, int]) -> None:
        node = self.nodes.get(node_id)
        if node is not None:
            node.free = dict(free)
            self._rescore(node)

    def acquire(self, node_id: bytes, need: dict[str, int]) -> None:
        """Count a decision against the node until its next report, so that a burst of
        decisions does not send everything to the same node."""
        node = self.nodes[node_id]
        free = node.free
        for k, v in need.items():
            free[k] = free.get(k, 0) - v
        self._rescore(node)

    def release(self, node_id: bytes, need: dict[str, int]) -> None:
        node = self.nodes.get(node_id)
        if node is None:
            return
        free = node.free
        for k, v in need.items():
            free[k] = free.get(k, 0) + v
        self._rescore(node)

    def _score(self, node: NodeResources) -> float:
        high = 0.0
        for k in SCORED:
            total = node.total.get(k, 0)
            if total > 0:
                used = 1.0 - node.free.get(k, 0) / total
                if used > high:
                    high = used
        return high if high >= self.spread_threshold else 0.0

    def _index(self, node: NodeResources) -> None:
        node.score = self._score(node)
        node.has_gpu = node.total.get("GPU", 0) > 0
        node.extra = frozenset(k for k, v in node.total.items() if k not in SCORED and v > 0)
        bisect.insort(self._order, (node.score, node.node_id))
        for k in node.extra:
            self._having.setdefault(k, set()).add(node.node_id)

    def _unindex(self, node: NodeResources) -> None:
        self._order_remove(node)
        for k in node.extra:
            s = self._having.get(k)
            if s is not None:
                s.discard(node.node_id)
                if not s:
                    del self._having[k]

    def _order_remove(self, node: NodeResources) -> None:
        key = (node.score, node.node_id)
        i = bisect.bisect_left(self._order, key)
        if i < len(self._order) and self._order[i] == key:
            del self._order[i]

    def _rescore(self, node: NodeResources) -> None:
        score = self._score(node)
        if score != node.score:
            self._order_remove(node)
            node.score = score
            bisect.insort(self._order, (score, node.node_id))

    # -- questions -------------------------------------------------------------------------
    def _restricting(self, need: dict[str, int]) -> Optional[set[bytes]]:
        """The smallest set of nodes that have every non-scored resource `need` names (None:
        the shape names none, every node is a candidate)."""
        best: Optional[set[bytes]] = None
        for k in need:
            if k in SCORED:
                continue
            s = self._having.get(k)
            if s is None:
                return set()
            if best is None or len(s) < len(best):
                best = s
        return best

    def pick(self, need: dict[str, int], strategy: object = DEFAULT, local: Optional[bytes] = None) -> Decision:
        if strategy == DEFAULT or strategy is None:
            return self._hybrid(need, local)
        if strategy == SPREAD:
            return self._spread(need)
        if isinstance(strategy, NodeAffinity):
            return self._affinity(need, strategy, local)
        raise ValueError(f"unknown scheduling strategy {strategy!r}")

    def _hybrid(self, need: dict[str, int], local: Optional[bytes]) -> Decision:
        if local is not None:
            node = self.nodes.get(local)
            # Below the threshold every node scores 0, so the local node is as good as any.
            if node is not None and node.score == 0.0 and (not node.has_gpu or "GPU" in need) \
                    and fits(node.free, need):
                return Decision(local, True)
        k = max(TOP_K_ABSOLUTE, int(len(self.nodes) * TOP_K_FRACTION))
        restricted = self._restricting(need)
        if restricted is None:
            order = self._order
            if "GPU" not in need:
                d = self._first_fit(order, need, k, local, skip_gpu=True)
                if d is not None:
                    return d
            d = self._first_fit(order, need, k, local, skip_gpu=False)
            if d is not None:
                return d
            return self._queue_on_feasible([self.nodes[nid] for _, nid in order], need, k, local)
        cands = sorted((self.nodes[nid] for nid in restricted), key=lambda n: (n.score, n.node_id))
        order = [(n.score, n.node_id) for n in cands]
        d = self._first_fit(order, need, k, local, skip_gpu=False)
        if d is not None:
            return d
        return self._queue_on_feasible(cands, need, k, local)

    def _first_fit(self, order: list, need: dict[str, int], k: int, local: Optional[bytes],
                   skip_gpu: bool) -> Optional[Decision]:
        """A node that fits now: the local one if it scores as low as the best, else the first
        fitting node from a random position among the first k."""
        n = len(order)
        if n == 0:
            return None
        nodes = self.nodes
        best = None
        for _, nid in order:  # the best score of a node that fits (usually the first node)
            node = nodes[nid]
            if (not skip_gpu or not node.has_gpu) and fits(node.free, need):
                best = node
                break
        if best is None:
            return None
        if local is not None:
            ln = nodes.get(local)
            if ln is not None and ln.score <= best.score and (not skip_gpu or not ln.has_gpu) \
                    and fits(ln.free, need):
                return Decision(local, True)
        start = self.rng.randrange(min(k, n))
        for i in range(start, start + n):
            node = nodes[order[i % n][1]]
            if (not skip_gpu or not node.has_gpu) and fits(node.free, need):
                return Decision(node.node_id, True)
        return Decision(best.node_id, True)

    def _queue_on_feasible(self, ordered: list[NodeResources], need: dict[str, int], k: int,
                           local: Optional[bytes]) -> Decision:
        """No node fits now: queue on the local node if it is as little loaded as the best
        feasible one (so busy nodes do not pass work back and forth), else on one of the k
        least-loaded feasible nodes."""
        feasible = [n for n in ordered if fits(n.total, need)]
        if not feasible:
            return Decision(None, infeasible=True)
        ln = self.nodes.get(local) if local is not None else None
        if ln is not None and ln.score <= feasible[0].score and fits(ln.total, need):
            return Decision(local, False)
        return Decision(feasible[self.rng.randrange(min(k, len(feasible)))].node_id, False)

    def _spread(self, need: dict[str, int]) -> Decision:
        ring = self._ring
        n = len(ring)
        feasible = None
        for i in range(n):
            nid = ring[(self._cursor + i) % n]
            node = self.nodes[nid]
            if fits(node.free, need):
                self._cursor = (self._cursor + i + 1) % n
                return Decision(nid, True)
            if feasible is None and fits(node.total, need):
                feasible = nid
        if feasible is None:
            return Decision(None, infeasible=True)
        return Decision(feasible, False)

    def _affinity(self, need: dict[str, int], aff: NodeAffinity, local: Optional[bytes]) -> Decision:
        node = self.nodes.get(aff.node_id)
        if node is not None and fits(node.total, need):
            available = fits(node.free, need)
            if available or not (aff.soft and aff.spill_on_unavailable):
                return Decision(node.node_id, available)
        if aff.soft:
            return self._hybrid(need, local)
        if node is None:
            why = f"node {aff.node_id.hex()} is dead or unknown to this cluster"
        else:
            why = f"node {aff.node_id.hex()} does not have the resources it needs"
        return Decision(None, unschedulable=f"The node specified via NodeAffinitySchedulingStrategy cannot be used: "
                                            f"{why}, and the affinity is not soft (soft=False).")
