"""Identifiers the providers mint (ret_..., req_...)."""

from __future__ import annotations

import os
import random
import string

_ALPHABET = string.ascii_letters + string.digits


class IdGenerator:
    """Random ids; with a seed, the same sequence on every run."""

    def __init__(self, seed: int | None = None) -> None:
        self._random: random.Random | None = random.Random(seed) if seed is not None else None

    def token(self, length: int = 20) -> str:
        # One urandom call per id (not one per character): ids are minted on every request.
        number = int.from_bytes(os.urandom(length)) if self._random is None else self._random.getrandbits(8 * length)
        chars = []
        for _ in range(length):
            number, digit = divmod(number, 62)
            chars.append(_ALPHABET[digit])
        return "".join(chars)

    def new(self, prefix: str, length: int = 20) -> str:
        return f"{prefix}_{self.token(length)}"
