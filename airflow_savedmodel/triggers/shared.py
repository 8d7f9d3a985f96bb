"""One listing and one readiness check per watched location in a triggerer, shared by every
trigger of the process that watches it.

A triggerer runs up to a thousand triggers on one event loop; sixteen sensors waiting on one
base path need not list it sixteen times per interval, nor run the same readiness check on the
same listing sixteen times. Triggers of a location poll on the same ticks (:func:`next_tick`),
whenever each started; at a tick, a listing younger than ``max_age`` is handed to whoever asks
and one being made is awaited, not repeated; a check is run once per (check, listing). Errors
reach every waiter, who decides for itself (retry or fail).

State is per event loop (a triggerer has one; tests run several in turn).
"""

from __future__ import annotations

import asyncio
import functools
import time
import weakref
import zlib
from collections.abc import Awaitable, Callable, Hashable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

T = TypeVar("T")
CHECK_THREADS = 32

_POLLS: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[Hashable, SharedPoll]] = (
    weakref.WeakKeyDictionary()
)


class SharedPoll:
    """The newest listing of one location and the checks made on it."""

    def __init__(self) -> None:
        self.listing: Any = None
        self.listed_at = float("-inf")
        self.pending: asyncio.Future[Any] | None = None
        self.checks: dict[Hashable, tuple[Any, asyncio.Future[Any]]] = {}
        self.listings = 0  # listings made (for benchmarks and tests)

    async def list(self, make: Callable[[], Awaitable[Any]], max_age: float) -> Any:
        if self.pending is not None:
            return await asyncio.shield(self.pending)
        if self.listing is not None and time.monotonic() - self.listed_at <= max_age:
            return self.listing
        self.pending = asyncio.ensure_future(make())
        try:
            self.listing = await asyncio.shield(self.pending)
            self.listed_at = time.monotonic()
            self.listings += 1
            return self.listing
        finally:
            self.pending = None

    async def check(self, key: Hashable, listing: Any, make: Callable[[], Awaitable[Any]]) -> Any:
        known = self.checks.get(key)
        if known is None or known[0] != listing or (known[1].done() and known[1].exception() is not None):
            known = (listing, asyncio.ensure_future(make()))
            self.checks[key] = known
        return await asyncio.shield(known[1])

    def last(self, key: Hashable) -> Any:
        """The answer of check ``key`` on an earlier listing (None if there is none yet), for a
        check that builds on the one before it."""
        known = self.checks.get(key)
        if known is None or not known[1].done() or known[1].cancelled() or known[1].exception() is not None:
            return None
        return known[1].result()


def poll_for(key: Hashable) -> SharedPoll:
    """The shared poll of ``key`` on the running event loop."""
    polls = _POLLS.setdefault(asyncio.get_running_loop(), {})
    poll = polls.get(key)
    if poll is None:
        poll = polls[key] = SharedPoll()
    return poll


def next_tick(key: Hashable, interval: float) -> float:
    """Seconds until the next poll of the location ``key``: the triggers of a location poll on
    the same ticks (multiples of ``interval``), so they share one listing whenever each of them
    started; each location's ticks are offset by its key, so locations do not all list at once."""
    interval = max(float(interval), 0.01)
    offset = zlib.crc32(repr(key).encode()) % 1000 / 1000 * interval
    return interval - ((time.monotonic() - offset) % interval)


@functools.cache
def _checks_pool() -> ThreadPoolExecutor:
    return ThreadPoolExecutor(CHECK_THREADS, thread_name_prefix="savedmodel-check")


async def in_thread(fn: Callable[..., T], *args: Any) -> T:
    """Run a blocking readiness check off the event loop, on threads of the triggers' own: the
    checks wait on storage round trips, and the loop's default pool (a few threads) would
    queue fifty locations' checks behind each other after every publish."""
    return await asyncio.get_running_loop().run_in_executor(_checks_pool(), functools.partial(fn, *args))
