"""bench/budget.py, the per-stage CPU budget, still measures the code it names: each stage it wraps
exists and is on the request path (a renamed step or handler would leave its row at 0 or fail)."""

from __future__ import annotations

import subprocess
import sys

import pytest
from helpers import ROOT

pytestmark = pytest.mark.system


def test_every_stage_of_the_budget_is_measured() -> None:
    ran = subprocess.run([sys.executable, str(ROOT / "bench" / "budget.py"), "--requests", "30", "--rounds", "1"],
                         capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert ran.returncode == 0, ran.stderr[-2000:]
    rows = {line[:27].strip(): line[27:].split() for line in ran.stdout.splitlines() if len(line) > 27}
    create, update_35up = 0, 4  # columns: 3pl create, 3pl list, 3pl status, 35up create, 35up update, floor
    for stage in ("auth", "validation", "rate count", "settings and clock", "ids", "core", "store (SQL)",
                  "journal", "response"):
        assert float(rows[stage][create]) > 0, (stage, rows[stage])
    for stage in ("auth", "validation", "core", "store (SQL)", "journal"):
        assert float(rows[stage][update_35up]) > 0, (stage, rows[stage])
