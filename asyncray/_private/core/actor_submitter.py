"""ActorSubmitter: a caller's side of actor calls.

Calls go straight to the actor's worker, in submission order per caller: a call waits for its
ObjectRef arguments and for every call submitted before it to have been sent, so calls run in
submission order even when their arguments become ready out of order. The head tells us where
the actor is (SubscribeActor -> ActorUpdate, at every state change); calls wait while it is
pending or restarting. When an incarnation dies, calls in flight on it are re-sent to the next
one while `max_task_retries` allows, else fail with ActorDiedError (the head's reason).
Everything here runs in the runtime thread except `submit_call`.
"""
from __future__ import annotations

from collections import deque
from typing import Any, Callable

from asyncray._private import ids, protocol as p
from asyncray._private.core.common import Entry, error_payload, retryable

ALIVE, DEAD = p.ALIVE, p.DEAD


class ActorCall:
    __slots__ = ("task_id", "actor_id", "method", "args_blob", "dep_refs", "nested_refs", "dep_payloads",
                 "num_returns", "return_ids", "retries_left", "retry_exceptions", "group", "waiting", "ready",
                 "incarnation", "on_done", "token")


class ActorState:
    __slots__ = ("actor_id", "status", "address", "incarnation", "queue", "in_flight", "error", "class_name")

    def __init__(self, actor_id: bytes, class_name: str) -> None:
        self.actor_id = actor_id
        self.class_name = class_name
        self.status = p.PENDING_CREATION
        self.address = ""
        self.incarnation = -1
        self.queue: deque[ActorCall] = deque()  # submission order; sent from the front
        self.in_flight: dict[bytes, ActorCall] = {}
        self.error: bytes | None = None


class ActorSubmitter:
    def __init__(self, client: Any) -> None:
        self.client = client
        self.endpoint = client.endpoint
        self.actors: dict[bytes, ActorState] = {}
        self._calls: dict[bytes, ActorState] = {}  # task id -> actor, for replies
        self.call_ids: set[bytes] = set()  # our unfinished actor calls (cancel needs to know)

    # -- caller's thread ------------------------------------------------------------------------
    def submit_call(self, actor_id: bytes, class_name: str, method: str, args: tuple, kwargs: dict, *,
                    num_returns: Any, max_task_retries: int, retry_exceptions: Any, group: str | None,
                    on_done: Callable[[], None] | None = None, token: Any = None) -> list:
        from asyncray.object_ref import ObjectRef, ObjectRefGenerator

        client = self.client
        call = ActorCall()
        call.task_id = task_id = client.task_ids.next_task_id()
        call.actor_id = actor_id
        call.method = method
        call.args_blob, call.dep_refs, call.nested_refs = client.submitter._serialize_args(args, kwargs)
        call.num_returns = num_returns
        streaming = num_returns == p.STREAMING
        call.return_ids = [] if streaming else [ids.object_id(task_id, i + 1) for i in range(max(num_returns, 1))]
        call.retries_left = max_task_retries
        call.retry_exceptions = retry_exceptions
        call.group = group
        call.ready = not call.dep_refs
        call.dep_payloads = []
        call.incarnation = -1
        call.on_done = on_done
        # A call keeps its actor alive until it is done, even if the last handle goes (as in Ray).
        call.token = token
        with client.lock:
            for rid in call.return_ids:
                client.objects[rid] = Entry(owned=True)
        if streaming:
            client.submitter._streams[task_id] = set()
            out: list = [ObjectRefGenerator(task_id, client.submitter)]
        else:
            out = [ObjectRef(rid, client.address, client) for rid in call.return_ids]
        self.call_ids.add(task_id)
        self.endpoint.call_threadsafe(self._submit, call, class_name)
        return out

    # -- runtime thread --------------------------------------------------------------------------
    def _state(self, actor_id: bytes, class_name: str = "") -> ActorState:
        state = self.actors.get(actor_id)
        if state is None:
            state = self.actors[actor_id] = ActorState(actor_id, class_name)
            self.client._request_head(p.SubscribeActor(actor_id))
        return state

    def _submit(self, call: ActorCall, class_name: str) -> None:
        state = self._state(call.actor_id, class_name)
        state.queue.append(call)
        if call.dep_refs:
            call.dep_payloads = [None] * len(call.dep_refs)
            call.waiting = len(call.dep_refs)

            def make_cb(i: int) -> Callable[[list], None]:
                def cb(payload: list) -> None:
                    call.dep_payloads[i] = payload
                    call.waiting -= 1
                    if call.waiting == 0:
                        call.ready = True
                        self._drain(state)
                return cb

            for i, ref in enumerate(call.dep_refs):
                self.client._when_ready(ref, make_cb(i))
        self._drain(state)

    def _drain(self, state: ActorState) -> None:
        if state.status == DEAD:
            self._fail_all(state)
            return
        while state.queue and state.status == ALIVE and state.queue[0].ready:
            call = state.queue.popleft()
            bad = next((pl for pl in call.dep_payloads if pl[0] == p.ERROR), None)
            if bad is not None:  # an argument failed: so does the call, without running
                self._finish_error(call, bad)
                continue
            call.incarnation = state.incarnation
            state.in_flight[call.task_id] = call
            self._calls[call.task_id] = state
            client = self.client
            self.endpoint.send(state.address, p.PushActorTask(
                call.task_id, call.actor_id, call.method, call.args_blob, call.dep_payloads, call.num_returns,
                client.address, client.driver_address, call.group))

    def on_update(self, msg: p.ActorUpdate, peer: Any) -> None:
        state = self.actors.get(msg.actor_id)
        if state is None or state.status == DEAD:
            return  # dead is final (we may know it before the head says so: we killed it)
        state.status = msg.state
        if msg.state == ALIVE:
            state.address = msg.address
        state.error = msg.error
        if msg.incarnation != state.incarnation or msg.state != ALIVE:
            self._lost_in_flight(state, msg.incarnation)
        state.incarnation = msg.incarnation
        self._drain(state)

    def on_peer_died(self, address: str) -> None:
        """A worker died: calls in flight on an actor that lived there are lost."""
        for state in self.actors.values():
            if state.address == address and state.status == ALIVE:
                state.status = p.RESTARTING  # until the head says what happens next
                self._lost_in_flight(state, None)

    def _lost_in_flight(self, state: ActorState, new_incarnation: int | None) -> None:
        lost = [c for c in state.in_flight.values() if new_incarnation is None or c.incarnation != new_incarnation]
        for call in reversed(lost):
            del state.in_flight[call.task_id]
            self._calls.pop(call.task_id, None)
            if call.retries_left != 0:
                call.retries_left -= 1
                state.queue.appendleft(call)
            else:
                self._finish_error(call, self._died_payload(state, "it died while this call was running"))

    def _died_payload(self, state: ActorState, what: str) -> list:
        if state.error is not None and state.status == DEAD:
            return [p.ERROR, state.error]
        from asyncray.exceptions import ActorDiedError

        return error_payload(ActorDiedError(f"The actor {state.class_name} ({state.actor_id.hex()}): {what}."))

    def _fail_all(self, state: ActorState) -> None:
        payload = self._died_payload(state, "is dead")
        while state.queue:
            self._finish_error(state.queue.popleft(), payload)
        for call in list(state.in_flight.values()):
            self._calls.pop(call.task_id, None)
            self._finish_error(call, payload)
        state.in_flight.clear()

    def on_task_reply(self, msg: p.TaskReply) -> None:
        state = self._calls.pop(msg.task_id, None)
        if state is None:
            return
        call = state.in_flight.pop(msg.task_id, None)
        if call is None:
            return
        if msg.app_error and call.retries_left != 0 and retryable(call.retry_exceptions, msg):
            call.retries_left -= 1
            state.queue.appendleft(call)
            self._drain(state)
            return
        sub = self.client.submitter
        if call.num_returns == p.STREAMING:
            sub._end_stream(call.task_id, msg.returns[0][1])
        else:
            for i, (rid, payload) in enumerate(zip(call.return_ids, msg.returns)):
                if msg.nested and msg.nested[i]:
                    self.client._record_contained(rid, msg.nested[i])
                self.client._set_payload(rid, payload)
        self.call_ids.discard(call.task_id)
        if call.on_done is not None:
            call.on_done()

    def _finish_error(self, call: ActorCall, payload: list) -> None:
        sub = self.client.submitter
        if call.num_returns == p.STREAMING:
            sub._stream_item(call.task_id, 1, payload)
            sub._end_stream(call.task_id, 1)
        else:
            for rid in call.return_ids:
                self.client._set_payload(rid, payload)
        self.call_ids.discard(call.task_id)
        if call.on_done is not None:
            call.on_done()

    def killed(self, actor_id: bytes, class_name: str) -> None:
        """We called ray.kill(no_restart=True): our later calls fail at once (the head tells
        everyone else)."""
        from asyncray.exceptions import ActorDiedError

        state = self._state(actor_id, class_name)
        state.status = DEAD
        state.error = error_payload(ActorDiedError(
            f"The actor {class_name} ({actor_id.hex()}) was killed by ray.kill()."))[1]
        self._fail_all(state)

    def cancel(self, task_id: bytes, force: bool, recursive: bool) -> bool:
        """Cancel an actor call we made: a queued one never runs; a running one is interrupted.
        False if `task_id` is not one of our actor calls."""
        from asyncray.exceptions import TaskCancelledError

        for state in self.actors.values():
            for call in state.queue:
                if call.task_id == task_id:
                    state.queue.remove(call)
                    self._finish_error(call, error_payload(TaskCancelledError(task_id.hex())))
                    self._drain(state)
                    return True
            call = state.in_flight.get(task_id)
            if call is not None:
                self.endpoint.send(state.address, p.CancelTask(task_id, force, recursive))
                return True
        return False
