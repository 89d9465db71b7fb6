"""make bench: every benchmark in turn, and each target said met or missed at the end.

The benchmarks run one after another whatever the one before found (a missed target used to stop the
run at the first script, so the fuzz and shadow figures were never measured). Targets come from the
benchmarks' own lines: bench/run.py's `PASS  ...`/`MISS  ...`, and the shadow proxy's drift (a report
a person acts on: any entry over the bench's traffic is a false alarm). The exit code is 0 unless
--gate (make bench GATE=1) and a target was missed; a benchmark that fails to run at all is exit 2
either way, since its figures are missing.

    python bench/all.py [--gate] [--script 'NAME=COMMAND ...']...
"""

from __future__ import annotations

import argparse
import re
import shlex
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent

BENCHMARKS = {
    "the server against its floor (bench/run.py)": [sys.executable, str(HERE / "run.py")],
    "where a request's CPU goes (bench/budget.py)": [sys.executable, str(HERE / "budget.py"), "--markdown"],
    "a fuzzed test's cost (bench/fuzz.py)": [sys.executable, str(HERE / "fuzz.py")],
    "the shadow proxy's cost (bench/shadow.py)": [sys.executable, str(HERE / "shadow.py")],
}

TARGET = re.compile(r"^(PASS|MISS)  (.+)$")
DRIFT = re.compile(r"(\d+) connections.*?drift over (\d+) shadowed exchanges: (\d+) diverged", re.S)


def targets(output: str) -> list[tuple[bool, str]]:
    """The targets a benchmark's output says it met or missed."""
    found = [(m.group(1) == "PASS", m.group(2)) for m in (TARGET.match(line) for line in output.splitlines()) if m]
    for connections, exchanges, diverged in DRIFT.findall(output):
        found.append((diverged == "0", f"shadow: no drift over {exchanges} shadowed exchanges at {connections} "
                                       f"connections ({diverged} diverged)"))
    return found


def run(name: str, command: list[str]) -> tuple[int, str]:
    """A benchmark, its output shown as it comes and kept."""
    print(f"\n== {name}", flush=True)
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=HERE.parent)
    kept = []
    assert proc.stdout is not None
    for line in proc.stdout:
        print(line, end="", flush=True)
        kept.append(line)
    return proc.wait(), "".join(kept)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--gate", action="store_true", help="exit 1 when a target is missed (make bench GATE=1)")
    parser.add_argument("--script", action="append", metavar="NAME=COMMAND",
                        help="run these instead of the benchmarks (for the tests)")
    args = parser.parse_args()
    chosen = {name: shlex.split(command) for name, _, command in (s.partition("=") for s in args.script)} \
        if args.script else BENCHMARKS
    results: list[tuple[bool, str]] = []
    broken: list[str] = []
    for name, command in chosen.items():
        code, output = run(name, command)
        found = targets(output)
        results += found
        # bench/run.py exits 1 on a missed target; any other failure (a traceback, exit 1 with no target
        # missed) means the benchmark did not finish.
        if code != 0 and not (code == 1 and any(not held for held, _ in found)):
            broken.append(f"{name}: exit {code}")
    print("\n== make bench: targets")
    for held, what in results:
        print(f"{'met   ' if held else 'MISSED'}  {what}")
    missed = sum(not held for held, _ in results)
    print(f"{len(results) - missed} met, {missed} missed" + ("" if args.gate or not missed else
                                                             " (make bench GATE=1 fails on a missed target)"))
    for failure in broken:
        print(f"FAILED TO RUN  {failure}")
    if broken:
        return 2
    return 1 if args.gate and missed else 0


if __name__ == "__main__":
    sys.exit(main())
