"""Identifiers the providers mint (ret_..., req_...)."""

from __future__ import annotations

import os
import random
import string

_ALPHABET = string.ascii_letters + string.digits
_TO_ALPHABET = bytes(ord(_ALPHABET[b % len(_ALPHABET)]) for b in range(256))
"""A random byte to a letter or digit (the first 8 of the 62 come up 5 times in 256, the others 4)."""

_UNSEEDED = random.Random()
"""Ours, not the `random` module's: a client's tests may seed that one (hypothesis does, per example),
which would make the mock mint the same ids again. Seeded from the OS, and again in each forked worker."""
os.register_at_fork(after_in_child=_UNSEEDED.seed)


class IdGenerator:
    """Random ids; with a seed, the same sequence on every run."""

    def __init__(self, seed: int | None = None) -> None:
        self._random: random.Random | None = random.Random(seed) if seed is not None else None
        self._adopted: dict[str, list[str]] = {}

    def adopt(self, ids: list[str]) -> None:
        """The next ids minted with these prefixes are these (`ret_abc`: the next `ret` id), in order; the
        shadow proxy's mock takes the upstream's ids this way. An empty list forgets what was not taken."""
        self._adopted = {}
        for known in ids:
            prefix, underscore, _ = known.rpartition("_")
            if underscore:
                self._adopted.setdefault(prefix, []).append(known)

    def token(self, length: int = 20) -> str:
        # Ids are minted on every request: one translate of random bytes, no loop, no system call.
        raw = (self._random or _UNSEEDED).randbytes(length)
        return raw.translate(_TO_ALPHABET).decode("ascii")

    def new(self, prefix: str, length: int = 20) -> str:
        if self._adopted:
            waiting = self._adopted.get(prefix)
            if waiting:
                return waiting.pop(0)
        return f"{prefix}_{self.token(length)}"
