"""Adaptive micro-batching: concurrent requests of the same kind are served by one call.

The serving pipeline is built for batches (one recommend call for 32 users costs a few times
one call for a single user, not 32 times), while HTTP requests arrive one user at a time. A
`MicroBatcher` keeps `workers` worker tasks; each takes every waiting request with the same key
as the oldest one (up to `max_batch`) and runs `run(key, requests)` in a thread. Nothing waits
for a batch to fill: an idle server serves a lone request at once, a busy one batches whatever
queued while its workers were busy. `run` returns one result per request, either a value or
an exception instance for that request alone.
"""
from __future__ import annotations

import asyncio
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from typing import Callable, Generic, Hashable, Sequence, TypeVar

Request = TypeVar("Request")
Result = TypeVar("Result")


class MicroBatcher(Generic[Request, Result]):
    """run(key, requests) -> one value or exception per request; workers: batches run at once
    (threads); max_batch: requests per call at most."""

    def __init__(self, run: Callable[[Hashable, Sequence[Request]], Sequence[Result | BaseException]],
                 workers: int = 2, max_batch: int = 32) -> None:
        if workers < 1 or max_batch < 1:
            raise ValueError(f"workers and max_batch must be >= 1, got {workers} and {max_batch}")
        self.run, self.workers, self.max_batch = run, workers, max_batch
        self.queue: deque[tuple[Hashable, Request, asyncio.Future]] = deque()
        self.ready: asyncio.Event | None = None
        self.tasks: list[asyncio.Task] = []
        self.executor = ThreadPoolExecutor(workers, thread_name_prefix="batch")

    def start(self) -> None:
        """Start the worker tasks on the running event loop."""
        self.ready = asyncio.Event()
        self.tasks = [asyncio.create_task(self._work()) for _ in range(self.workers)]

    async def stop(self) -> None:
        for task in self.tasks:
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)
        self.executor.shutdown(wait=False, cancel_futures=True)

    async def submit(self, key: Hashable, request: Request) -> Result:
        """The result of `request`, served in a batch with others of the same key."""
        assert self.ready is not None, "MicroBatcher.start() was not called"
        future: asyncio.Future = asyncio.get_running_loop().create_future()
        self.queue.append((key, request, future))
        self.ready.set()
        return await future

    def _take(self) -> tuple[Hashable, list[tuple[Request, asyncio.Future]]]:
        """The oldest request's key and up to max_batch waiting requests with that key."""
        key = self.queue[0][0]
        taken, kept = [], deque()
        while self.queue:
            entry = self.queue.popleft()
            (taken if entry[0] == key and len(taken) < self.max_batch else kept).append(entry)
        self.queue = kept
        return key, [(request, future) for _, request, future in taken]

    async def _work(self) -> None:
        loop = asyncio.get_running_loop()
        assert self.ready is not None
        while True:
            while not self.queue:
                self.ready.clear()
                await self.ready.wait()
            key, batch = self._take()
            try:
                results = await loop.run_in_executor(self.executor, self.run, key, [request for request, _ in batch])
            except BaseException as error:  # noqa: BLE001 - the batch failed as a whole: each request gets it
                if isinstance(error, asyncio.CancelledError):
                    raise
                results = [error] * len(batch)
            for (_, future), result in zip(batch, results):
                if future.done():  # the client went away
                    continue
                if isinstance(result, BaseException):
                    future.set_exception(result)
                else:
                    future.set_result(result)
