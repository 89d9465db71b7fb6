"""Identifiers the providers mint (ret_..., req_...)."""

from __future__ import annotations

import random
import secrets
import string

_ALPHABET = string.ascii_letters + string.digits


class IdGenerator:
    """Random ids; with a seed, the same sequence on every run."""

    def __init__(self, seed: int | None = None) -> None:
        self._random: random.Random | None = random.Random(seed) if seed is not None else None

    def token(self, length: int = 20) -> str:
        if self._random is None:
            return "".join(secrets.choice(_ALPHABET) for _ in range(length))
        return "".join(self._random.choice(_ALPHABET) for _ in range(length))

    def new(self, prefix: str, length: int = 20) -> str:
        return f"{prefix}_{self.token(length)}"
