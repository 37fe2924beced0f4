"""ROUTER/DEALER endpoints driven by an asyncio loop without a Future per message.

Each process binds one ROUTER (its address; peers' requests arrive there) and opens one DEALER
per peer it calls (replies to its requests and pushes arrive there). All sockets belong to the
loop thread: zmq sockets are not thread-safe, so other threads hand messages over with
`send_threadsafe`.

Rules fixed here, once:
- ROUTER sockets set ROUTER_MANDATORY: a message to an unknown peer raises instead of vanishing.
  The caller learns of it through `on_unroutable`.
- High-water marks are 0 (unbounded): a burst queues, it is never dropped. Back-pressure lives
  in the protocol (leases bound the tasks in flight per worker).
- Reading drains with NOBLOCK until zmq.Again; the zmq FD is edge-triggered, so after every
  send we re-check EVENTS and drain again if input arrived meanwhile.
- Sends to one peer within a loop tick go as one frame (codec.encode_batch).
- Closing uses linger=0: a stopping process does not wait for peers that are gone.
"""
from __future__ import annotations

import asyncio
import contextvars
import logging
import os
from collections import deque
from typing import Any, Callable, NamedTuple

import zmq

from asyncray._private.transport.codec import decode_batch, encode_batch

logger = logging.getLogger(__name__)

class Endpoint:
    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        identity: bytes,
        handler: Callable[[Any, "Peer"], None],
        on_unroutable: Callable[[bytes, list[Any]], None] | None = None,
    ) -> None:
        self.loop = loop
        self.identity = identity
        self.ctx = zmq.Context()
        self._handler = handler
        self._on_unroutable = on_unroutable
        self.router = self.ctx.socket(zmq.ROUTER)
        self.router.setsockopt(zmq.ROUTER_MANDATORY, 1)
        self.router.setsockopt(zmq.SNDHWM, 0)
        self.router.setsockopt(zmq.RCVHWM, 0)
        self.router.setsockopt(zmq.LINGER, 0)
        self.addresses: list[str] = []
        self._dealers: dict[str, zmq.Socket] = {}
        # Outgoing batches, flushed once per loop tick.
        self._out_dealer: dict[str, list[Any]] = {}
        self._out_router: dict[bytes, list[Any]] = {}
        self._flush_scheduled = False
        # Messages handed over by other threads.
        self._inbox: deque[tuple[Any, Any]] = deque()
        self._context = contextvars.Context()
        self._closed = False
        self._watched: list[zmq.Socket] = []

    # -- setup ---------------------------------------------------------------------------
    def bind(self, address: str) -> str:
        self.router.bind(address)
        actual = self.router.getsockopt(zmq.LAST_ENDPOINT).decode()
        self.addresses.append(actual)
        if len(self.addresses) == 1:
            self._watch(self.router, None)
        return actual

    def _watch(self, sock: zmq.Socket, address: str | None) -> None:
        fd = sock.getsockopt(zmq.FD)
        self.loop.add_reader(fd, self._drain, sock, address)
        self._watched.append(sock)
        # Input may already be pending; an edge-triggered fd would not tell us.
        self.loop.call_soon(self._drain, sock, address)

    def _dealer(self, address: str) -> zmq.Socket:
        sock = self._dealers.get(address)
        if sock is None:
            sock = self.ctx.socket(zmq.DEALER)
            sock.setsockopt(zmq.IDENTITY, self.identity)
            sock.setsockopt(zmq.SNDHWM, 0)
            sock.setsockopt(zmq.RCVHWM, 0)
            sock.setsockopt(zmq.LINGER, 0)
            sock.connect(address)
            self._dealers[address] = sock
            self._watch(sock, address)
        return sock

    def disconnect(self, address: str) -> None:
        sock = self._dealers.pop(address, None)
        if sock is not None:
            self._out_dealer.pop(address, None)
            try:
                self.loop.remove_reader(sock.getsockopt(zmq.FD))
            except Exception:
                pass
            self._watched.remove(sock)
            sock.close(0)

    # -- receiving -----------------------------------------------------------------------
    def _drain(self, sock: zmq.Socket, address: str | None) -> None:
        if self._closed:
            return
        handler = self._handler
        is_router = sock is self.router
        while True:
            try:
                frames = sock.recv_multipart(zmq.NOBLOCK, copy=True)
            except zmq.Again:
                break
            except zmq.ZMQError:
                if self._closed:
                    return
                raise
            if is_router:
                peer: Peer = Peer(self, frames[0], None)
                body = frames[1]
            else:
                peer = Peer(self, None, address)
                body = frames[0]
            for msg in decode_batch(body):
                try:
                    handler(msg, peer)
                except Exception:
                    logger.exception("handler failed for %s", type(msg).__name__)
            if self._closed:
                return

    # -- sending (loop thread) -------------------------------------------------------------
    def send(self, address: str, msg: Any) -> None:
        """Queue `msg` for the process bound at `address` (through our DEALER to it)."""
        batch = self._out_dealer.get(address)
        if batch is None:
            self._out_dealer[address] = [msg]
        else:
            batch.append(msg)
        self._schedule_flush()

    def reply(self, identity: bytes, msg: Any) -> None:
        """Queue `msg` for a peer connected to our ROUTER under `identity`."""
        batch = self._out_router.get(identity)
        if batch is None:
            self._out_router[identity] = [msg]
        else:
            batch.append(msg)
        self._schedule_flush()

    def _schedule_flush(self) -> None:
        if not self._flush_scheduled:
            self._flush_scheduled = True
            self.loop.call_soon(self.flush)

    def flush(self) -> None:
        self._flush_scheduled = False
        if self._closed:
            return
        if self._out_dealer:
            out, self._out_dealer = self._out_dealer, {}
            for address, msgs in out.items():
                sock = self._dealer(address)
                sock.send(encode_batch(msgs), copy=False)
                self._after_send(sock, address)
        if self._out_router:
            out_r, self._out_router = self._out_router, {}
            for identity, msgs in out_r.items():
                try:
                    self.router.send_multipart((identity, encode_batch(msgs)), copy=False)
                except zmq.ZMQError as e:
                    if e.errno != zmq.EHOSTUNREACH:
                        raise
                    if self._on_unroutable is not None:
                        self._on_unroutable(identity, msgs)
                    else:
                        logger.warning("dropped %d message(s) to vanished peer %s", len(msgs), identity.hex())
            self._after_send(self.router, None)

    def _after_send(self, sock: zmq.Socket, address: str | None) -> None:
        if sock.getsockopt(zmq.EVENTS) & zmq.POLLIN:
            self.loop.call_soon(self._drain, sock, address)

    # -- other threads ---------------------------------------------------------------------
    def call_threadsafe(self, fn: Callable[..., None], *args: Any) -> None:
        """Run fn(*args) in the loop thread, in call order; one burst is drained in one pass.

        No "wake-up pending" flag: a KeyboardInterrupt landing between setting such a flag and
        scheduling the wake-up would leave the flag set and the loop deaf for good. An extra
        wake-up finds the inbox empty and costs about a microsecond.
        """
        self._inbox.append((fn, args))
        try:
            # In our own empty context, not the caller's (see LoopThread.call).
            self.loop.call_soon_threadsafe(self._run_inbox, context=self._context)
        except RuntimeError:  # loop closed: the runtime is shutting down
            pass

    def _run_inbox(self) -> None:
        inbox = self._inbox
        while inbox:
            fn, args = inbox.popleft()
            try:
                fn(*args)
            except Exception:
                logger.exception("cross-thread call %r failed", fn)

    # -- teardown --------------------------------------------------------------------------
    def close(self) -> None:
        if self._closed:
            return
        try:
            self.flush()
        except Exception:
            pass
        self._closed = True
        for sock in self._watched:
            try:
                self.loop.remove_reader(sock.getsockopt(zmq.FD))
            except Exception:
                pass
        for sock in list(self._dealers.values()) + [self.router]:
            sock.close(0)
        self._dealers.clear()
        self.ctx.term()


class Peer(NamedTuple):
    """Where a message came from, so a handler can answer without knowing the socket."""

    endpoint: Endpoint
    identity: bytes | None
    address: str | None

    def answer(self, msg: Any) -> None:
        if self.identity is not None:
            self.endpoint.reply(self.identity, msg)
        else:
            assert self.address is not None
            self.endpoint.send(self.address, msg)


def local_address(address: str) -> str:
    """A node's ipc address ("tcp://...|ipc://..." as it registered) when its socket is on this
    machine, else its tcp one."""
    tcp, _, ipc = address.partition("|")
    return ipc if ipc and os.path.exists(ipc[len("ipc://"):]) else tcp
