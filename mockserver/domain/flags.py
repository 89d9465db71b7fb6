"""Command-line value types shared by the CLI and the providers' own `serve` flags."""

from __future__ import annotations

import argparse
from collections.abc import Callable


def positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def up_to(high: int) -> Callable[[str], int]:
    """A positive integer of at most `high`: every number a flag takes has a ceiling that the code behind
    it can hold (a journal of 10**20 entries starts, then fails on its first read)."""

    def parse(text: str) -> int:
        value = positive(text)
        if value > high:
            raise argparse.ArgumentTypeError(f"expected at most {high}, got {text!r}")
        return value

    parse.__name__ = "integer"  # argparse names the type in its message: "invalid integer value"
    return parse
