"""One answer, computed in a worker thread and handed to the event loop event by event.

The worker waits its turn at the :class:`~.gate.Gate`, iterates the backend's
:class:`~misuan.inference.ChatStream` and puts each event (or the exception that ended
it) on an asyncio queue. :meth:`Generation.abandon` (the client went away) cancels the
stream, which frees the request on every node.
"""

from __future__ import annotations

import asyncio
import threading

from ..inference import ChatBackend, ChatEvent, GenerationParams
from .gate import Ticket
from .stops import StopFilter

#: the end of the queue
END = object()


class Generation:
    def __init__(self, backend: ChatBackend, messages: list[dict], params: GenerationParams, ticket: Ticket):
        self._backend, self._messages, self._params, self._ticket = backend, messages, params, ticket
        self._queue: asyncio.Queue = asyncio.Queue()
        self._loop = asyncio.get_running_loop()
        self._abandoned = threading.Event()
        self._lock = threading.Lock()
        self._stream = None
        self.started = False  # an MPC job began (the first event was asked for)
        self.finished = False
        threading.Thread(target=self._work, name="misuan-proxy-generation", daemon=True).start()

    def _work(self) -> None:
        stops = StopFilter(self._params.stop)
        try:
            stream = self._backend.stream_chat(self._messages, self._params)  # input checks, tokenizing: no node yet
            with self._lock:
                self._stream = stream
            if not self._ticket.wait_turn(self._abandoned):
                stream.close()
                return
            self.started = True
            if self._abandoned.is_set():
                stream.cancel()
            for ev in stream:
                if ev.final:
                    tail = stops.finish()
                    if tail:
                        self._put(ChatEvent(text=tail))
                    self._put(ChatEvent(finish_reason="stop" if stops.stopped else ev.finish_reason, usage=ev.usage))
                    break
                text = stops.push(ev.text)
                self._put(ChatEvent(text=text, token_id=ev.token_id, usage=stream.usage()))  # the running cost
                if stops.stopped:
                    stream.cancel()  # a stop string the backend did not honour: end it here
        except BaseException as exc:  # noqa: BLE001 - handed to the event loop
            self._put(exc)
        finally:
            self._ticket.leave()
            self._put(END)

    def _put(self, item) -> None:
        try:
            self._loop.call_soon_threadsafe(self._queue.put_nowait, item)
        except RuntimeError:  # the loop is closed: nobody listens any more
            pass

    async def next(self, timeout: float | None = None):
        """The next event, exception or :data:`END`; None when ``timeout`` passed first."""
        try:
            item = await asyncio.wait_for(self._queue.get(), timeout)
        except asyncio.TimeoutError:
            return None
        if item is END or isinstance(item, BaseException) or item.final:
            self.finished = True
        return item

    def abandon(self) -> None:
        """The client is gone: cancel the stream (frees the request on every node)."""
        self._abandoned.set()
        with self._lock:
            stream = self._stream
        if stream is not None:
            stream.cancel()
