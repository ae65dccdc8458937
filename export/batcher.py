"""The dynamic batcher: texts from concurrent requests, run together in one model call.

Requests put their texts into one bounded queue. A single loop takes up to ``max_batch``
texts, waiting at most ``max_delay`` after the oldest arrived for more to come, runs them
as ONE call of the model in a worker thread (so the event loop keeps accepting requests
meanwhile), and hands each text's output row back to the request that sent it.

A request with more texts than ``max_batch`` is split: its texts queue one after another
and ride in as many consecutive batches as they need (possibly beside other requests'
texts); the request is answered when its last text is done. The queue holds at most
``max_queue`` texts; a request that does not fit is refused whole (``QueueFull``), so
memory is bounded by the queue and never grows with the load.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import numpy as np

log = logging.getLogger("moohead.serve")

RunBatch = Callable[[list[Any]], np.ndarray]
"""One model call: inputs -> output rows ``[len(inputs), d]``, in the inputs' order."""


class QueueFull(Exception):
    """The queue cannot take a request's texts now; the client should retry later."""


class Closed(Exception):
    """The batcher is shutting down and takes no new work."""


@dataclass(frozen=True)
class BatcherConfig:
    """How texts are grouped.

    Attributes:
        max_batch: Inputs in one model call at most.
        max_delay: Seconds the oldest queued input waits for a batch to fill.
        max_queue: Inputs waiting (not yet in a model call) at most.
    """

    max_batch: int = 32
    max_delay: float = 0.005
    max_queue: int = 1024


@dataclass
class _Entry:
    item: Any
    future: asyncio.Future[np.ndarray]
    arrived: float = field(default_factory=time.monotonic)


class DynamicBatcher:
    """Groups inputs from concurrent callers into batched model calls.

    Use from one event loop: ``await start()``, then ``await submit(items)`` from request
    handlers, and ``await close()`` at shutdown, which finishes every queued input first.

    Args:
        run: The model call, run in a worker thread, one batch at a time.
        config: Batch size, delay and queue bounds.
        on_batch: Called after each model call with the batch size and its seconds.
    """

    def __init__(
        self,
        run: RunBatch,
        config: BatcherConfig,
        on_batch: Callable[[int, float], None] | None = None,
    ) -> None:
        self.run = run
        self.config = config
        self.on_batch = on_batch
        self._pending: collections.deque[_Entry] = collections.deque()
        self._wakeup = asyncio.Event()
        self._closing = False
        self._task: asyncio.Task[None] | None = None
        self._event_loop: asyncio.AbstractEventLoop | None = None
        # One worker: batches run one after another, and the next one gathers meanwhile.
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="moohead-batch")

    @property
    def depth(self) -> int:
        """Inputs queued and not yet taken into a model call."""
        return len(self._pending)

    @property
    def accepting(self) -> bool:
        return self._task is not None and not self._closing

    async def start(self) -> None:
        """Start the batching loop on the running event loop."""
        self._event_loop = asyncio.get_running_loop()
        self._task = asyncio.create_task(self._loop(), name="moohead-batcher")

    def stop_accepting(self) -> None:
        """Refuse new inputs and run the queued ones now, without waiting for batches to fill.

        Safe to call from any thread or a signal handler once started.
        """
        if self._event_loop is not None:
            self._event_loop.call_soon_threadsafe(self._stop_accepting)

    def _stop_accepting(self) -> None:
        self._closing = True
        self._wakeup.set()

    async def submit(self, items: Sequence[Any]) -> np.ndarray:
        """Queue ``items`` and wait for their output rows ``[len(items), d]``.

        Raises:
            QueueFull: The queue has no room for all of ``items`` now.
            Closed: The batcher is shutting down.
            Exception: Whatever the model call raised for a batch holding these items.
        """
        if not self.accepting:
            raise Closed("the server is shutting down")
        if not items:
            raise ValueError("submit needs at least one input")
        if len(self._pending) + len(items) > self.config.max_queue:
            raise QueueFull(
                f"the queue holds {len(self._pending)} of {self.config.max_queue} texts; "
                f"no room for {len(items)} more"
            )
        loop = asyncio.get_running_loop()
        entries = [_Entry(item, loop.create_future()) for item in items]
        self._pending.extend(entries)
        self._wakeup.set()
        # If the caller goes away, gather cancels the futures; the loop skips those inputs.
        results = await asyncio.gather(*(e.future for e in entries), return_exceptions=True)
        rows: list[np.ndarray] = []
        for result in results:
            if isinstance(result, BaseException):  # each failed input holds its batch's error
                raise result
            rows.append(result)
        return np.stack(rows)

    async def close(self) -> None:
        """Stop taking work, finish every queued input, then stop the loop and worker."""
        self._stop_accepting()
        if self._task is not None:
            await self._task
        self._executor.shutdown(wait=True)

    async def _loop(self) -> None:
        while True:
            if not self._pending:
                if self._closing:
                    return
                self._wakeup.clear()
                await self._wakeup.wait()
                continue
            await self._gather()
            batch = self._take()
            if batch:
                await self._run(batch)

    async def _gather(self) -> None:
        """Wait until a full batch is queued or the oldest input has waited long enough."""
        deadline = self._pending[0].arrived + self.config.max_delay
        while len(self._pending) < self.config.max_batch and not self._closing:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return
            self._wakeup.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wakeup.wait(), remaining)

    def _take(self) -> list[_Entry]:
        batch: list[_Entry] = []
        while self._pending and len(batch) < self.config.max_batch:
            entry = self._pending.popleft()
            if not entry.future.done():  # done here means cancelled: its caller left
                batch.append(entry)
        return batch

    async def _run(self, batch: list[_Entry]) -> None:
        loop = asyncio.get_running_loop()
        start = time.perf_counter()
        try:
            rows = await loop.run_in_executor(self._executor, self.run, [e.item for e in batch])
        except Exception as exc:
            log.exception("a batch of %d input(s) failed", len(batch))
            for entry in batch:
                if not entry.future.done():
                    entry.future.set_exception(exc)
            return
        if self.on_batch is not None:
            self.on_batch(len(batch), time.perf_counter() - start)
        for entry, row in zip(batch, rows, strict=True):
            if not entry.future.done():
                entry.future.set_result(row)
