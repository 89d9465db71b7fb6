"""make timings: how long the README's commands take on this machine, measured as a newcomer meets them.

In a fresh clone of this checkout's HEAD (in a temporary folder), each step runs in turn and is timed:
`make run`'s first build of .venv (the runtime dependencies), the test extras `make test` adds, `make check`
(the quick lane), then `make test`. The machine's load average is printed beside each figure: the README
quotes the figures of a quiet machine and says how loaded the others were; the CPU seconds each step used
are printed too, which the machine's load does not change much. Not part of make test (it runs
make test); nothing is written outside the temporary clone.

    python tools/timings.py [--skip-test]
"""

from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

STEPS = [
    ("make run's first build of .venv (runtime dependencies)", ["make", ".venv/.run-installed"]),
    ("make test's test extras, on top", ["make", ".venv/.test-installed"]),
    ("make check (lint, types, pytest -m 'not system')", ["make", "check"]),
    ("make test (lint, types, docs, every test)", ["make", "test"]),
]


def _cpu() -> float:
    """CPU seconds of every process this one has waited for, and of theirs: on a quiet machine, work that
    runs one process at a time takes about this long."""
    used = resource.getrusage(resource.RUSAGE_CHILDREN)
    return used.ru_utime + used.ru_stime


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--skip-test", action="store_true", help="stop after make check")
    args = parser.parse_args()
    steps = STEPS[:-1] if args.skip_test else STEPS
    with tempfile.TemporaryDirectory(prefix="returns-mock-timings-") as folder:
        clone = Path(folder) / "returns-mock"
        subprocess.run(["git", "clone", "--quiet", str(ROOT), str(clone)], check=True, timeout=300)
        env = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "MAKEFLAGS", "MAKELEVEL")}
        for name, command in steps:
            before, used = os.getloadavg()[0], _cpu()
            started = time.monotonic()
            ran = subprocess.run(command, cwd=clone, env=env, capture_output=True, text=True)
            took, cpu = time.monotonic() - started, _cpu() - used
            print(f"{took:8.0f} s  {name}  ({cpu:.0f} s of CPU; load {before:.1f} -> {os.getloadavg()[0]:.1f} "
                  f"on {os.cpu_count()} cores; exit {ran.returncode})", flush=True)
            if ran.returncode != 0:
                print(ran.stdout[-3000:] + ran.stderr[-3000:], file=sys.stderr)
                return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
