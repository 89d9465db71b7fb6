"""Returns the client did not make: made in the provider's portal, or by another integration on the same
account. While answers vary, the first page of an account's returns a client reads may find some there
already, drawn within the provider's seed schema (contracts/<provider>/seed-return.json: what a create
request could hold, and the status and refund to leave it in) and built by the provider's own rules, so
every page, its `meta.pagination` and every later read agree with them.

How many is drawn too: one, as many as fill the page the client asked for, or one more than that (so
that a second page exists): a page is where a client's paging assumptions break. The first DRAWN
returns are drawn whole; the others, there to fill a page, are the simplest return the seed schema allows
(each draw at its first option), so that a failure shrinks fast and its note stays short.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

import orjson

from mockserver.contract import contract, valid
from mockserver.contract.errors import ProviderError
from mockserver.domain.backend import Backend
from mockserver.domain.clock import Clock
from mockserver.domain.drawing import instance
from mockserver.domain.seeding import SEED_SCHEMA, ScenarioError, seed
from mockserver.domain.variation import Chooser, escaped
from mockserver.store import ReturnRecord, Store

DRAWN = 2
"""Portal returns drawn whole; the rest of a page's filling is the simplest return."""
ATTEMPTS = 3
"""Draws per portal return before giving it up (the provider's rules refused the others)."""
SHOWN = 160
"""How much of a drawn return a note shows."""


class Portal:
    def __init__(self, store: Store, backends: Mapping[str, Backend], clock: Clock) -> None:
        self.store = store
        self.backends = backends
        self.clock = clock

    def draw(self, chooser: Chooser, provider: str, account: str, page_size: int) -> list[str]:
        """Once per account and variation: maybe some returns made elsewhere, stored; what was drawn, as
        notes (empty when nothing was)."""
        backend = self.backends.get(provider)
        if backend is None or SEED_SCHEMA not in contract(provider).documents:
            return []
        if chooser.seen(("portal", provider, account)):
            return []
        own = self.store.page(provider, account, status=None, order_id=None, offset=0, limit=1).total
        counts = sorted({1, max(1, page_size - own), page_size - own + 1})
        drawn = chooser.index(None, len(counts) + 1)
        if not drawn:
            return []
        count = counts[drawn - 1]
        simplest = self._one(SIMPLEST, backend, provider, account) if count > DRAWN else None
        made = [m for m in (chooser.group(lambda drawing: self._one(drawing, backend, provider, account))
                            if n < DRAWN else self._again(simplest, backend) for n in range(count)) if m is not None]
        try:
            seed(self.store, [record for record, _ in made])
        except ScenarioError:  # an id taken meanwhile: nothing of it was stored
            return []
        for record, _ in made[DRAWN:]:
            chooser.plain(record.id)
        notes = [f"state: a return made in the provider's portal: {_shown(record, item)}"
                 for record, item in made[:DRAWN]]
        if len(made) > DRAWN:
            notes.append(f"state: {len(made) - DRAWN} more made in the provider's portal, each "
                         f"{_shown(made[-1][0], made[-1][1]).partition(' ')[2]} (with the account's own "
                         f"{own}, {len(made) + own} returns: pages of {page_size})")
        return notes

    def _one(self, chooser: Chooser, backend: Backend, provider: str,
             account: str) -> tuple[ReturnRecord, dict[str, Any]] | None:
        c = contract(provider)
        validator = c.validator(SEED_SCHEMA)
        resolver = c.registry.resolver(base_uri=str(validator.schema["$id"]))
        for _ in range(ATTEMPTS):
            item = instance(chooser, validator.schema, resolver, {"provider": provider, "account": account})
            item.pop("id", None)  # the provider gives it
            if not valid(validator, item):  # a cross-field rule of the request (reason other: notes)
                continue
            try:
                return backend.seed_record(item, self.clock.now()), item
            except ProviderError:  # its rules refuse this state (a refund larger than refundable)
                continue
        return None


    def _again(self, made: tuple[ReturnRecord, dict[str, Any]] | None,
               backend: Backend) -> tuple[ReturnRecord, dict[str, Any]] | None:
        """Another return like one made already (from its drawn item: a return of its own)."""
        if made is None:
            return None
        item = copy.deepcopy(made[1])
        return backend.seed_record(item, self.clock.now()), item


class _Simplest(Chooser):
    """Every draw at its first option: the simplest instance a schema allows."""

    def _index(self, n: int, keep: float) -> int:
        return 0

    def _text(self, min_size: int, max_size: int) -> str:
        return "0" * min_size

    def _integer(self, low: int, high: int) -> int:
        return low


SIMPLEST = _Simplest()


def _shown(record: ReturnRecord, item: dict[str, Any]) -> str:
    """The return's id and what was drawn for it (its create body, status and refund)."""
    drawn = {key: value for key, value in item.items() if key not in ("provider", "account")}
    text = escaped(orjson.dumps(drawn).decode())
    return f"{record.id} " + (text if len(text) <= SHOWN else text[:SHOWN - 3] + "...")
