"""The provider registry and the composition root: the one place that names the providers.

Adding a provider means its contracts folder, its package with a `Provider` entry, one line below, and
its tests. A provider that lives elsewhere (another package, a test tree) is added with
`REGISTRY.register(entry)` or, for a while, `with REGISTRY.registered(entry): ...`.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import contextmanager

from mockserver.contract import remove_folder
from mockserver.domain.clock import Clock
from mockserver.domain.config import Config
from mockserver.domain.mock import Mock
from mockserver.providers.provider import Provider
from mockserver.providers.thirtyfiveup.provider import Provider35up
from mockserver.providers.threeplship.provider import Provider3plship
from mockserver.store import Store


class Registry:
    def __init__(self, entries: Iterable[Provider] = ()) -> None:
        self._entries: dict[str, Provider] = {}
        for entry in entries:
            self.register(entry)

    def register(self, entry: Provider) -> Provider:
        if entry.name in self._entries:
            raise ValueError(f"a provider named {entry.name!r} is registered already")
        self._entries[entry.name] = entry
        return entry

    def unregister(self, name: str) -> None:
        entry = self._entries.pop(name)
        if entry.contracts_folder is not None:
            remove_folder(name)

    @contextmanager
    def registered(self, entry: Provider) -> Iterator[Provider]:
        self.register(entry)
        try:
            yield entry
        finally:
            self.unregister(entry.name)

    def __iter__(self) -> Iterator[Provider]:
        return iter(list(self._entries.values()))

    def __getitem__(self, name: str) -> Provider:
        return self._entries[name]

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def names(self) -> tuple[str, ...]:
        return tuple(self._entries)


REGISTRY = Registry([Provider35up(), Provider3plship()])


def build_mock(config: Config | None = None, *, store: Store | None = None, clock: Clock | None = None,
               providers: Iterable[Provider] | None = None) -> Mock:
    """A Mock of every registered provider (or of `providers`)."""
    return Mock(config or Config(), REGISTRY if providers is None else providers, store=store, clock=clock)
