"""Ids the mock mints: the providers' form, a repeatable sequence when seeded, never shared by workers."""

from __future__ import annotations

import os
import re

from mockserver.domain.ids import IdGenerator


def test_ids_have_the_providers_form_and_repeat_when_seeded() -> None:
    ids = [IdGenerator().new("ret") for _ in range(2000)]
    assert all(re.fullmatch(r"ret_[A-Za-z0-9]{20}", i) for i in ids)
    assert len(set(ids)) == len(ids)
    assert len({c for i in ids for c in i[4:]}) == 62  # every letter and digit turns up
    assert [IdGenerator(7).new("req", 24) for _ in range(3)] == [IdGenerator(7).new("req", 24) for _ in range(3)]
    seeded = IdGenerator(7)
    assert seeded.new("ret") != seeded.new("ret")


def test_a_forked_worker_mints_other_ids_than_its_parent() -> None:
    """The server forks its workers after the app is built: were the generator's state inherited, two
    workers would mint the same ids and their creates would collide."""
    reader, writer = os.pipe()
    generator = IdGenerator()
    child = os.fork()
    if child == 0:  # pragma: no cover - the child reports through the pipe and leaves at once
        os.write(writer, "\n".join(generator.new("ret") for _ in range(100)).encode())
        os._exit(0)
    os.close(writer)
    parent_ids = {generator.new("ret") for _ in range(100)}
    with os.fdopen(reader) as fh:
        child_ids = set(fh.read().split("\n"))
    os.waitpid(child, 0)
    assert len(child_ids) == 100 and not parent_ids & child_ids


def test_ids_do_not_repeat_when_the_client_seeds_the_random_module() -> None:
    """hypothesis seeds `random` before each example; a client's own tests may too."""
    import random

    generator = IdGenerator()
    random.seed(1)
    first = generator.new("ret")
    random.seed(1)
    assert generator.new("ret") != first
