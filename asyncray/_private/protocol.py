"""Every message that crosses a process boundary, one record per message, grouped by peer.

Conventions: requests carry `req_id` (unique per sender) and are answered by a `...Reply` with
the same id; events are named in the past tense. Values travel as *payloads*:
    [INLINE, bytes]                      serialised value small enough to travel in messages
    [SHM, segment, size, node_id]        serialised value in a shared-memory segment
    [ERROR, bytes]                       a pickled exception that `get` raises
Resources travel as {name: float}.
"""
from __future__ import annotations

from typing import Any, NamedTuple

from asyncray._private.transport.codec import message

INLINE, SHM, ERROR = 0, 1, 2
# Marks the end of a streaming generator's items: [END, number_of_items]. Never handed to users.
END = 3
STREAMING = -1  # num_returns of a streaming generator task


# -- to and from the head ----------------------------------------------------------------------
@message(1)
class RegisterNode(NamedTuple):
    req_id: int
    node_id: bytes
    address: str
    resources: dict
    pid: int


@message(2)
class RegisterNodeReply(NamedTuple):
    req_id: int
    incarnation: int


@message(3)
class RegisterJob(NamedTuple):
    req_id: int
    driver_address: str
    namespace: str | None
    pid: int


@message(4)
class RegisterJobReply(NamedTuple):
    req_id: int
    job_id: int
    namespace: str
    nodes: list  # [[node_id, address, resources], ...]


@message(5)
class JobFinished(NamedTuple):
    job_id: int


@message(6)
class GetNodes(NamedTuple):
    req_id: int


@message(7)
class NodesReply(NamedTuple):
    req_id: int
    nodes: list


@message(8)
class KVPut(NamedTuple):
    req_id: int
    namespace: str
    key: bytes
    value: bytes
    overwrite: bool


@message(9)
class KVGet(NamedTuple):
    req_id: int
    namespace: str
    key: bytes


@message(10)
class KVReply(NamedTuple):
    req_id: int
    value: Any


# -- to and from a node manager ----------------------------------------------------------------
@message(20)
class RegisterWorker(NamedTuple):
    worker_id: bytes
    pid: int
    address: str


@message(21)
class RegisterClient(NamedTuple):
    """A driver (or any non-worker process) announces itself so the node can watch its pid."""

    req_id: int
    client_id: bytes
    pid: int
    address: str
    job_id: int


@message(22)
class RegisterClientReply(NamedTuple):
    req_id: int
    node_id: bytes
    store_capacity: int


@message(23)
class RequestLease(NamedTuple):
    req_id: int
    shape: dict
    job_id: int
    runtime_env: Any  # None or a validated runtime_env dict
    # None (DEFAULT), "SPREAD" or ["NODE", node_id, soft, spill_on_unavailable]. Placement
    # groups need none: the shape names the bundle's resources (scheduling/bundles.py).
    strategy: Any = None


@message(24)
class LeaseGranted(NamedTuple):
    req_id: int
    lease_id: int
    worker_id: bytes
    worker_address: str
    gpu_ids: list  # the GPUs this lease holds (CUDA_VISIBLE_DEVICES of its tasks)


@message(25)
class LeaseFailed(NamedTuple):
    req_id: int
    error: bytes  # pickled exception


@message(26)
class CancelLeaseRequest(NamedTuple):
    req_id: int


@message(27)
class ReturnLease(NamedTuple):
    lease_id: int
    kill_worker: bool


@message(28)
class LeaseWorkerDied(NamedTuple):
    lease_id: int
    reason: str


@message(29)
class WorkerBlocked(NamedTuple):
    worker_id: bytes


@message(30)
class WorkerUnblocked(NamedTuple):
    worker_id: bytes


@message(31)
class CreateObject(NamedTuple):
    req_id: int
    object_id: bytes
    size: int
    owner_address: str


@message(32)
class CreateObjectReply(NamedTuple):
    req_id: int
    segment: str | None
    error: bytes | None  # pickled ObjectStoreFullError


@message(33)
class SealObject(NamedTuple):
    object_id: bytes


@message(34)
class FreeObjects(NamedTuple):
    object_ids: list


@message(35)
class GetResources(NamedTuple):
    req_id: int


@message(36)
class ResourcesReply(NamedTuple):
    req_id: int
    total: dict
    available: dict


@message(38)
class ShutdownNode(NamedTuple):
    req_id: int


@message(39)
class ShutdownNodeReply(NamedTuple):
    req_id: int


# -- between owners and workers ----------------------------------------------------------------
@message(50)
class PushTask(NamedTuple):
    task_id: bytes
    name: str
    fn_id: bytes
    fn_blob: bytes | None  # sent once per worker, then the id alone
    args_blob: bytes
    deps: list  # payloads of top-level ObjectRef arguments, in placeholder order
    num_returns: int
    job_id: int
    owner_address: str
    driver_address: str  # where print() output goes
    cpus: float
    max_calls: int
    gpu_ids: list
    placement_group: Any = None  # [pg_id, capture_child_tasks, bundle specs] of a task placed in a group


@message(51)
class TaskReply(NamedTuple):
    task_id: bytes
    returns: list  # payloads
    # The task raised in user code (retryable under retry_exceptions); the class for the filter.
    app_error: bool
    # The worker exits after this reply (max_calls reached): drop the lease, do not return it.
    worker_exiting: bool
    # Per return: [[object_id, owner], ...] refs the value contains (each held for the return).
    nested: list


@message(52)
class GetObject(NamedTuple):
    """A borrower asks the owner for an object's value; answered when it is ready."""

    req_id: int
    object_id: bytes


@message(53)
class ObjectReply(NamedTuple):
    req_id: int
    payload: list


@message(54)
class LogLines(NamedTuple):
    pid: int
    name: str
    lines: list


@message(56)
class GetJobInfo(NamedTuple):
    """A worker serving a job for the first time asks the job's driver for what it needs."""

    req_id: int


@message(57)
class JobInfoReply(NamedTuple):
    req_id: int
    namespace: str
    sys_path: list  # the driver's import path, so modules next to the script import in workers


@message(58)
class GeneratorItem(NamedTuple):
    """One item of a streaming generator task, sent as soon as the task yields it."""

    task_id: bytes
    index: int  # 1-based; the item's object id is task_id + index
    payload: list
    nested: list  # [[object_id, owner], ...] refs the item contains


@message(59)
class CancelTask(NamedTuple):
    task_id: bytes
    force: bool
    recursive: bool


@message(60)
class AddBorrower(NamedTuple):
    """Keep these objects for `key` (a borrower's address, or "obj:<container hex>")."""

    req_id: int
    object_ids: list
    key: str


@message(61)
class AddBorrowerReply(NamedTuple):
    req_id: int


@message(62)
class RemoveBorrower(NamedTuple):
    object_ids: list
    key: str


@message(63)
class PeerDied(NamedTuple):
    """The node tells its processes that a worker died: fail what waits on it, drop its borrows."""

    address: str
    reason: str


@message(64)
class UnregisterClient(NamedTuple):
    """A driver leaves a cluster it joined: release its leases, requests and objects now."""

    req_id: int


@message(65)
class UnregisterClientReply(NamedTuple):
    req_id: int


@message(66)
class RestoreObject(NamedTuple):
    """A reader found a segment gone because it was spilled: bring it back into memory."""

    req_id: int
    object_id: bytes


@message(67)
class RestoreObjectReply(NamedTuple):
    req_id: int
    error: bytes | None  # pickled exception when it cannot be restored


# -- actors ------------------------------------------------------------------------------------
# Actor states, as Ray names them.
PENDING_CREATION, ALIVE, RESTARTING, DEAD = "PENDING_CREATION", "ALIVE", "RESTARTING", "DEAD"


@message(80)
class CreateActor(NamedTuple):
    """A creator asks the head to place and start an actor; answered once it is registered."""

    req_id: int
    actor_id: bytes
    spec: dict  # see head/actor_manager.py ActorSpec fields


@message(81)
class CreateActorReply(NamedTuple):
    req_id: int
    actor_id: bytes  # the existing actor's id when get_if_exists found one
    info: dict | None  # the existing actor's handle info (get_if_exists), else None
    error: bytes | None  # pickled ValueError for a taken name


@message(82)
class SubscribeActor(NamedTuple):
    """Send me ActorUpdate now and at every state change of this actor."""

    actor_id: bytes


@message(83)
class ActorUpdate(NamedTuple):
    actor_id: bytes
    state: str
    address: str
    incarnation: int
    error: bytes | None  # pickled exception explaining a DEAD actor


@message(84)
class StartActor(NamedTuple):
    """Head -> leased worker: become this actor (construct it)."""

    actor_id: bytes
    incarnation: int
    spec: dict


@message(85)
class ActorStarted(NamedTuple):
    actor_id: bytes
    incarnation: int
    error: bytes | None  # pickled RayTaskError from the constructor


@message(86)
class KillActor(NamedTuple):
    actor_id: bytes
    no_restart: bool


@message(87)
class ActorExited(NamedTuple):
    """The actor ended itself (exit_actor): dead for good, no restart."""

    actor_id: bytes


@message(88)
class GetNamedActor(NamedTuple):
    req_id: int
    name: str
    namespace: str


@message(89)
class NamedActorReply(NamedTuple):
    req_id: int
    info: dict | None


@message(90)
class ListNamedActors(NamedTuple):
    req_id: int
    namespace: str | None  # None: every namespace


@message(91)
class ListNamedActorsReply(NamedTuple):
    req_id: int
    actors: list  # [[name, namespace], ...]


@message(92)
class OwnerDied(NamedTuple):
    """Node -> head: a process died; actors it owned (not detached) go with it."""

    address: str


@message(93)
class PushActorTask(NamedTuple):
    task_id: bytes
    actor_id: bytes
    method: str
    args_blob: bytes
    deps: list
    num_returns: int
    owner_address: str
    driver_address: str
    concurrency_group: str | None


@message(94)
class TaskNotRun(NamedTuple):
    """A worker gives back a task it had queued but not started (it blocked in get, or it
    retired after max_calls): the owner runs it elsewhere, without counting a retry."""

    task_id: bytes


@message(95)
class LeaseInfeasible(NamedTuple):
    """No node has what this lease needs: it stays queued (a node that fits may join)."""

    req_id: int
    missing: dict  # resource -> amount asked, for the resources no node has enough of
    available: dict  # the node's total resources


# -- placement groups: owner <-> head <-> nodes ------------------------------------------------
@message(100)
class CreatePlacementGroup(NamedTuple):
    req_id: int
    pg_id: bytes
    spec: dict  # bundles, strategy, name, namespace, lifetime, job_id, owner_address


@message(101)
class PlacementGroupReply(NamedTuple):
    """Answers Create/Remove (error: a pickled exception, or None) and WaitPlacementGroup
    (sent once the group is created, or with the error that ends the wait)."""

    req_id: int
    error: bytes | None


@message(102)
class RemovePlacementGroup(NamedTuple):
    req_id: int
    pg_id: bytes


@message(103)
class WaitPlacementGroup(NamedTuple):
    req_id: int
    pg_id: bytes


@message(104)
class GetPlacementGroups(NamedTuple):
    """pg_id set: that group; name set: the group of that name in `namespace`; else all."""

    req_id: int
    pg_id: bytes | None
    name: str
    namespace: str


@message(105)
class PlacementGroupsReply(NamedTuple):
    req_id: int
    groups: list  # of placement_group_table() dicts


@message(106)
class ReserveBundles(NamedTuple):
    """Head -> node: prepare these bundles: set their resources aside (nothing can use them
    until CommitBundles), or refuse if they are not free."""

    req_id: int
    pg_id: bytes
    bundles: list  # [[index, {resource: units}], ...]


@message(107)
class ReserveBundlesReply(NamedTuple):
    req_id: int
    ok: bool
    total: dict  # the node's resources after the change, in units
    free: dict


@message(108)
class ReleaseBundles(NamedTuple):
    """Head -> node: give the group's bundle resources back to the node. `removed`: the group
    is gone, so also end what runs in it and fail what waits for it (then sent to every node:
    work may wait on any node for a group that never got placed); else a placement attempt is
    undone. Answered by a ReserveBundlesReply when req_id is not 0."""

    req_id: int
    pg_id: bytes
    removed: bool
    indices: list | None = None  # the bundles to give back; None: all of the group's here


@message(109)
class ResourceReport(NamedTuple):
    """Node -> head: its resources changed (bundles released, leases came or went)."""

    node_id: bytes
    total: dict  # units
    free: dict


# -- several nodes --------------------------------------------------------------------------------
@message(110)
class LeaseSpillback(NamedTuple):
    """Node -> owner: ask `address` (node `node_id`) for this lease instead; it fits there."""

    req_id: int
    node_id: bytes
    address: str


@message(111)
class ClusterUpdate(NamedTuple):
    """Head -> nodes: nodes that joined or whose resources changed, and nodes that died."""

    nodes: list  # [[node_id, address, total_units, free_units], ...]
    dead: list  # [node_id, ...]


@message(112)
class ReapIfIdle(NamedTuple):
    """Node -> idle worker: it has been idle long enough to be ended; may it go?"""

    worker_id: bytes


@message(113)
class ReapReply(NamedTuple):
    """Worker -> node: `owns`: it owns objects still referenced (or actors), so ending it would
    lose them; the node keeps it."""

    worker_id: bytes
    owns: bool


@message(114)
class CommitBundles(NamedTuple):
    """Head -> node: every node of this placement attempt has prepared its bundles
    (ReserveBundles); make these ones usable (their group resources appear)."""

    pg_id: bytes
    indices: list
