"""State follows the clock: the provider's own moves (an expiry, a refund's completion, an autopilot move)
are made, and held webhook deliveries released, when the mock's clock passes them, not when a client
next reads.

`settle` makes every move due now, across providers and accounts, in store transactions: a due return is
taken under the store's lock (SQLite's write lock, PostgreSQL's row lock with SKIP LOCKED, the memory
store's lock) and read again there, so each move is made once, whichever worker or replica settles first,
and a settled return is no longer due. The mock settles at once when its clock is moved through it (the
control plane, `Mock.advance`); as time passes on a real clock (or when a clock is moved some other way), a
background tick settles every TICK_SECONDS: one thread per process (each forked worker starts its own)
for every mock it holds, each held weakly, so a mock nobody closes still goes when nobody uses it. Reads
still settle what they read on their own, so an answer never shows a state the clock has passed.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable, Mapping

from mockserver.contract.errors import StoreError
from mockserver.domain.autopilot import ProviderMove
from mockserver.domain.backend import Backend
from mockserver.domain.clock import Clock, to_millis
from mockserver.domain.delivery_faults import DeliveryFaults
from mockserver.store import Delivery, Store
from mockserver.store.background import Every

_log = logging.getLogger("returns-mock")


class Scheduler:
    TICK_SECONDS = 1.0
    BATCH = 100
    """Returns settled per transaction."""
    MAX_BATCHES = 10_000

    def __init__(self, store: Store, clock: Clock, backends: Mapping[str, Backend],
                 moved: Callable[[list[ProviderMove]], None], released: Callable[[list[Delivery]], None]) -> None:
        self.store = store
        self.clock = clock
        self.backends = backends
        self.moved = moved
        """Told of the moves made, once committed (the mock journals them)."""
        self.released = released
        """Told of the deliveries released (the mock's deliverers start)."""

    def settle(self) -> list[ProviderMove]:
        """Every move due at the clock's now made, and every held delivery due released; the moves made."""
        now = self.clock.now()
        now_ms = to_millis(now)
        made: list[ProviderMove] = []
        for _ in range(self.MAX_BATCHES):
            if not self.store.has_due_any(now_ms):
                break
            batch: list[ProviderMove] = []
            with self.store.transaction() as tx:
                records = tx.due_any(now_ms, self.BATCH)
                for record in records:
                    backend = self.backends.get(record.provider)
                    if backend is None:  # a provider this mock does not serve: its returns are left as they are
                        record.due_at = None
                    else:
                        batch += backend.settle_in(tx, record, now)
                    tx.update(record)
            self.moved(batch)
            made += batch
            if not records:
                break
        if self.store.has_held(now_ms):
            released = self.store.release_held(now_ms, int(time.time() * 1000), DeliveryFaults.release_order)
            if released:
                self.released(released)
        return made

    def start(self) -> None:
        _TICK.watch(self)

    def stop(self) -> None:
        _TICK.forget(self)

    def tick(self) -> None:
        try:
            self.settle()
        except StoreError:  # the store is away: the next tick tries again
            pass
        except Exception:  # background work never takes the server down; say why it failed
            with contextlib.suppress(Exception):
                _log.exception("returns-mock: settling the provider's due moves failed")


_TICK = Every("returns-mock-scheduler", Scheduler.TICK_SECONDS, Scheduler.tick)
