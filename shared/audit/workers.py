"""Worker processes for the parts of a replay that do not depend on one another.

Most of an audit's time goes into work that each record or request needs on its own:
decoding and checking a journal entry and its signature, reading its transcript, decoding
a request's PSBTs and recomputing its hash. The judgement that follows is one pass in
order, in the calling process. :class:`Workers` runs the independent work in other
processes (``spawn``: nothing is shared with this one but what each job carries and
returns) and hands the results back in order, a bounded number of jobs ahead, so memory
does not grow with the evidence. With no worker processes, or few jobs, the same functions
run in this process: the results are the same either way (the test suite checks it).
"""

from __future__ import annotations

import multiprocessing
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from typing import TypeVar

from shared.closing import Closing

Job = TypeVar("Job")
Result = TypeVar("Result")


class Workers(Closing):
    """``processes`` worker processes (0: everything in this process), started when first
    needed and stopped when the ``with`` block ends."""

    def __init__(self, processes: int = 0) -> None:
        self.processes = max(0, processes)
        self._pool: ProcessPoolExecutor | None = None

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None

    def map(
        self, function: Callable[[Job], Result], jobs: Iterable[Job], parallel: bool = True
    ) -> Iterator[Result]:
        """``function(job)`` for each job, in order; in worker processes when there are
        any and ``parallel`` (the caller's judgement that the jobs are worth sending),
        with at most three jobs per process in flight (a worker always has the next one
        queued while this process judges a result or runs a job itself). ``function``
        must be a module-level function and jobs and results picklable."""
        if not parallel or self.processes == 0:
            for job in jobs:
                yield function(job)
            return
        if self._pool is None:
            context = multiprocessing.get_context("spawn")
            self._pool = ProcessPoolExecutor(max_workers=self.processes, mp_context=context)
        pending: deque[Future[Result]] = deque()
        jobs = iter(jobs)
        try:
            for job in jobs:
                pending.append(self._pool.submit(function, job))
                while len(pending) >= 3 * self.processes:
                    if not pending[0].done():
                        # rather than wait idle, this process takes the next job itself
                        # (its result needs no pickling either)
                        try:
                            extra = next(jobs)
                        except StopIteration:
                            pass
                        else:
                            pending.append(_here(function, extra))
                            continue
                    yield pending.popleft().result()
            while pending:
                yield pending.popleft().result()
        finally:
            for future in pending:
                future.cancel()


def _here(function: Callable[[Job], Result], job: Job) -> Future[Result]:
    """``function(job)`` run here, as a finished future: its result, or its error, comes
    out in its turn, after the jobs before it."""
    future: Future[Result] = Future()
    try:
        future.set_result(function(job))
    except Exception as exc:  # raised by .result(), in order
        future.set_exception(exc)
    return future


__all__ = ["Workers"]
