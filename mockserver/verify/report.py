"""Findings of a contract check, as a summary for people and JUnit XML for CI."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path


@dataclass(frozen=True)
class Failure:
    suite: str
    """Where it was found: 'contract' (schemathesis), 'scenario' (lifecycle scripts) or 'har'."""
    case: str
    """The operation ('POST /returns') or scenario name."""
    check: str
    message: str
    reproducer: str = ""


def _kind(v: Failure) -> tuple[str, str, str, str]:
    return v.suite, v.case, v.check, v.message.split(":")[0]


@dataclass
class Report:
    title: str
    cases: dict[tuple[str, str], int] = field(default_factory=dict)
    """(suite, case) -> how many checks ran there."""
    violations: list[Failure] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.violations

    def ran(self, suite: str, case: str, checks: int = 1) -> None:
        self.cases[(suite, case)] = self.cases.get((suite, case), 0) + checks

    def add(self, violation: Failure) -> None:
        """Record a violation; the same check failing the same way on one case is reported once."""
        self.cases.setdefault((violation.suite, violation.case), 0)
        key = _kind(violation)
        if all(_kind(v) != key for v in self.violations):
            self.violations.append(violation)

    def summary(self) -> str:
        lines = [self.title]
        for suite in sorted({s for s, _ in self.cases}):
            names = [c for s, c in self.cases if s == suite]
            failed = {v.case for v in self.violations if v.suite == suite}
            lines.append(f"  {suite}: {len(names)} checked, {len(failed)} with violations")
        if self.ok:
            lines.append("No violations.")
            return "\n".join(lines)
        lines.append(f"{len(self.violations)} violation{'s' if len(self.violations) != 1 else ''}:")
        for n, v in enumerate(self.violations, 1):
            lines.append(f"{n}. [{v.suite}] {v.case} — {v.check}: {v.message}")
            if v.reproducer:
                lines.extend(f"     {line}" for line in v.reproducer.splitlines())
        return "\n".join(lines)

    def write_junit(self, path: Path) -> None:
        suites = ET.Element("testsuites", name=self.title)
        for suite_name in sorted({s for s, _ in self.cases}):
            cases = [c for s, c in self.cases if s == suite_name]
            failures = [v for v in self.violations if v.suite == suite_name]
            suite = ET.SubElement(suites, "testsuite", name=suite_name, tests=str(len(cases)),
                                  failures=str(len({v.case for v in failures})), errors="0")
            for case_name in cases:
                case = ET.SubElement(suite, "testcase", classname=suite_name, name=case_name)
                for v in failures:
                    if v.case == case_name:
                        failure = ET.SubElement(case, "failure", type=v.check, message=v.message)
                        failure.text = v.reproducer
        ET.indent(suites)
        ET.ElementTree(suites).write(path, encoding="utf-8", xml_declaration=True)
