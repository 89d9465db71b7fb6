"""Identifiers the providers mint (ret_..., req_...)."""

from __future__ import annotations

import random
import string

_ALPHABET = string.ascii_letters + string.digits
_TO_ALPHABET = bytes(ord(_ALPHABET[b % len(_ALPHABET)]) for b in range(256))
"""A random byte to a letter or digit (the first 8 of the 62 come up 5 times in 256, the others 4)."""


class IdGenerator:
    """Random ids; with a seed, the same sequence on every run."""

    def __init__(self, seed: int | None = None) -> None:
        self._random: random.Random | None = random.Random(seed) if seed is not None else None

    def token(self, length: int = 20) -> str:
        # Ids are minted on every request: one translate of random bytes, no loop, no system call. The
        # module's generator is seeded from the OS and again in each forked worker, so workers differ.
        raw = random.randbytes(length) if self._random is None else self._random.randbytes(length)
        return raw.translate(_TO_ALPHABET).decode("ascii")

    def new(self, prefix: str, length: int = 20) -> str:
        return f"{prefix}_{self.token(length)}"
