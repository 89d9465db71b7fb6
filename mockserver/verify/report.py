"""Findings of a contract check (verify, validate-har, drift), as a summary for people and, for CI, as JUnit
XML (a test case per operation or scenario), SARIF 2.1.0 (each finding at the line of the contract where
the rule it breaks is written) and Markdown (a job's step summary)."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mockserver.contract import contracts_root
from mockserver.contract.drift import OTHER, DriftLog
from mockserver.verify.har import HarReport
from mockserver.version import __version__

SARIF_SCHEMA = "https://json.schemastore.org/sarif-2.1.0.json"
CONTRACTS_BASE = "RETURNS_MOCK_CONTRACTS"
"""The SARIF base URI id of contract files (`originalUriBaseIds`: the contracts folder this mock ships)."""

MARKDOWN_FINDINGS = 50
"""Findings a Markdown summary lists (a step summary is for a glance; the rest are counted)."""


@dataclass(frozen=True)
class Failure:
    suite: str
    """Where it was found: 'contract' (schemathesis), 'scenario' (lifecycle scripts), 'compare-mock', 'har' or
    'drift'."""
    case: str
    """The operation ('POST /returns', '3plship createReturn') or scenario name."""
    check: str
    message: str
    reproducer: str = ""
    schema: str = ""
    """Where the rule it breaks is written: contract file and JSON pointer (`3plship/return.json#/properties/
    status`), if known."""


def _kind(v: Failure) -> tuple[str, str, str, str]:
    return v.suite, v.case, v.check, v.message.split(":")[0]


@dataclass
class Report:
    title: str
    cases: dict[tuple[str, str], int] = field(default_factory=dict)
    """(suite, case) -> how many checks ran there."""
    violations: list[Failure] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    """Lines the summary shows after the suites (what a comparison compared)."""

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
        lines.extend(self.notes)
        if self.ok:
            lines.append("No violations.")
            return "\n".join(lines)
        lines.append(f"{len(self.violations)} violation{'s' if len(self.violations) != 1 else ''}:")
        for n, v in enumerate(self.violations, 1):
            lines.append(f"{n}. [{v.suite}] {v.case} — {v.check}: {v.message}")
            if v.reproducer:
                lines.extend(f"     {line}" for line in v.reproducer.splitlines())
        return "\n".join(lines)

    def write(self, junit: Path | None = None, sarif: Path | None = None, markdown: Path | None = None) -> None:
        if junit is not None:
            self.write_junit(junit)
        if sarif is not None:
            sarif.write_text(json.dumps(self.sarif(), indent=2) + "\n", encoding="utf-8")
        if markdown is not None:
            markdown.write_text(self.markdown(), encoding="utf-8")

    def write_junit(self, path: Path) -> None:
        suites = ET.Element("testsuites", name=self.title)
        for suite_name in sorted({s for s, _ in self.cases}):
            cases = [c for s, c in self.cases if s == suite_name]
            failures = [v for v in self.violations if v.suite == suite_name]
            suite = ET.SubElement(suites, "testsuite", name=suite_name, tests=str(len(cases)),
                                  failures=str(len({v.case for v in failures})), errors="0")
            for case_name in cases:
                case = ET.SubElement(suite, "testcase", classname=suite_name, name=case_name)
                found = [v for v in failures if v.case == case_name]
                if found:  # one failure element per case (JUnit readers take the first), listing each finding
                    failure = ET.SubElement(case, "failure", type=found[0].check,
                                            message=f"{len(found)} finding(s): {found[0].message}"[:1000])
                    failure.text = "\n\n".join(f"{v.check}: {v.message}" + (f"\n  rule: {v.schema}" if v.schema else "")
                                               + (f"\n{v.reproducer}" if v.reproducer else "") for v in found)
        ET.indent(suites)
        ET.ElementTree(suites).write(path, encoding="utf-8", xml_declaration=True)

    def sarif(self) -> dict[str, Any]:
        """The findings as a SARIF 2.1.0 log: a rule per kind of check, a result per finding, located at the
        contract file and line of the rule it breaks (the contracts folder this mock ships is the base)."""
        rules = sorted({(v.suite, v.check) for v in self.violations})
        index = {rule: i for i, rule in enumerate(rules)}
        results = []
        for v in self.violations:
            result: dict[str, Any] = {
                "ruleId": f"{v.suite}/{v.check}", "ruleIndex": index[(v.suite, v.check)], "level": "error",
                "message": {"text": f"{v.case}: {v.message}"}, "properties": {"case": v.case}}
            location = _location(v.schema)
            if location is not None:
                result["locations"] = [location]
            if v.reproducer:
                result["properties"]["reproducer"] = v.reproducer
            results.append(result)
        return {
            "$schema": SARIF_SCHEMA, "version": "2.1.0",
            "runs": [{
                "tool": {"driver": {
                    "name": "returns-mock", "version": __version__, "semanticVersion": __version__,
                    "rules": [{"id": f"{suite}/{check}", "name": f"{suite}-{check}".replace("_", "-"),
                               "shortDescription": {"text": _RULES.get(check, f"{suite}: {check}")}}
                              for suite, check in rules]}},
                "originalUriBaseIds": {CONTRACTS_BASE: {"uri": _contracts_uri(),
                                                        "description": {"text": "the contracts this mock ships"}}},
                "automationDetails": {"description": {"text": self.title}},
                "results": results}]}

    def markdown(self) -> str:
        """A summary for a CI job's step summary: the verdict, a table of what was checked, the findings."""
        verdict = "no findings" if self.ok else f"{len(self.violations)} finding(s)"
        lines = [f"### {_md(self.title)}", "", f"**{'✅' if self.ok else '❌'} {verdict}**", ""]
        lines += [f"> {_md(note.strip())}" for note in self.notes]
        if self.notes:
            lines.append("")
        lines += ["| suite | case | checks | findings |", "|---|---|---:|---:|"]
        for (suite, case), checks in sorted(self.cases.items()):
            found = sum(1 for v in self.violations if (v.suite, v.case) == (suite, case))
            lines.append(f"| {_md(suite)} | {_md(case)} | {checks} | {found} |")
        if self.violations:
            lines += ["", "| # | case | check | finding | rule |", "|---:|---|---|---|---|"]
            for n, v in enumerate(self.violations[:MARKDOWN_FINDINGS], 1):
                lines.append(f"| {n} | {_md(v.case)} | `{v.check}` | {_md(v.message)} | "
                             f"{'`' + _md(v.schema) + '`' if v.schema else ''} |")
            if len(self.violations) > MARKDOWN_FINDINGS:
                lines += ["", f"…and {len(self.violations) - MARKDOWN_FINDINGS} more (see the SARIF or JUnit report)."]
        return "\n".join(lines) + "\n"


_RULES = {
    "mock_refuses": "The provider accepted what the mock refuses.",
    "mock_accepts": "The mock accepted what the provider refuses.",
    "status": "The provider and the mock answered with other statuses.",
    "error_code": "Same status, another error code.",
    "missing": "A field the provider sends and the mock does not.",
    "extra": "A field the mock sends and the provider does not.",
    "type": "A field of another JSON type.",
    "value": "A field with another value.",
    "order": "The same list items in another order.",
    "header": "A response header the contract declares, missing on one side or different.",
    "request": "The client's request breaks the contract.",
    "response": "The provider's answer breaks the contract.",
}


def har_report(title: str, har: HarReport) -> Report:
    """validate-har's findings: a case per operation checked, a finding per violation."""
    report = Report(title)
    for (provider, operation), checked in har.operations.items():
        report.ran("har", f"{provider} {operation}", checked)
    for v in har.violations:
        case = f"{v.provider} {v.operation or f'{v.method} {v.path}'}"
        where = f"{v.field}: " if v.field else ""
        report.add(Failure("har", case, v.source, f"{where}{v.message} (entry {v.entry}: {v.method} {v.path})",
                           schema=v.schema))
    return report


def drift_report(title: str, log: DriftLog, other: str = "upstream") -> Report:
    """A drift log's findings: a case per operation compared, a finding per difference (the same difference
    at the same place of one operation once)."""
    report = Report(title, notes=[drift_line(log.summary(), other)])
    for (provider, operation), exchanges in log.operations.items():
        report.ran("drift", f"{provider} {operation}", exchanges)
    for entry in log.entries():
        follows = f", follows from #{entry.cause}" if entry.cause is not None else ""
        for d in entry.differences:
            report.add(Failure("drift", f"{entry.provider} {entry.operation or OTHER}", d.kind,
                               f"{d.pointer or 'status'}: {d.values(other)} (#{entry.id} {entry.method} {entry.path}"
                               f"{follows})", schema=d.schema))
    return report


def drift_line(summary: dict[str, int], other: str = "upstream") -> str:
    """What a comparison compared, in one line (verify --compare-mock prints it, differences or not)."""
    line = (f"  compared with a local mock: {summary['exchanges']} exchange(s), {summary['diverged']} with "
            f"differences ({summary['root_causes']} root cause(s), {summary['consequences']} consequence(s))")
    if summary.get("uncompared"):
        line += f", {summary['uncompared']} not compared"
    return line


def _md(text: str) -> str:
    return " ".join(text.split()).replace("|", "\\|")


def _contracts_uri() -> str:
    root = Path(str(contracts_root()))
    return root.resolve().as_uri() + "/"


def _location(schema: str) -> dict[str, Any] | None:
    """A SARIF location for `file#pointer` in the contracts: the file and the line the pointer's value starts on."""
    if not schema:
        return None
    file, _, pointer = schema.partition("#")
    node = contracts_root()
    for part in file.split("/"):
        node = node / part
    try:
        text = node.read_text(encoding="utf-8")
    except (OSError, ValueError):
        return None
    return {"physicalLocation": {"artifactLocation": {"uri": file, "uriBaseId": CONTRACTS_BASE},
                                 "region": {"startLine": line_of(text, pointer)}},
            "logicalLocations": [{"fullyQualifiedName": schema, "kind": "object"}]}


def line_of(text: str, pointer: str) -> int:
    """The line (from 1) where the value at a JSON pointer starts in a JSON text; where the pointer leaves the
    document, the line of the deepest part of it that is there."""
    decoder = json.JSONDecoder()
    found = _blank(text, 0)
    for raw in pointer.split("/")[1:] if pointer else []:
        segment, i = raw.replace("~1", "/").replace("~0", "~"), found
        if text.startswith("{", i):
            i = _blank(text, i + 1)
            while i < len(text) and text[i] != "}":
                key, after = decoder.raw_decode(text, i)
                value = _blank(text, _blank(text, after) + 1)
                if key == segment:
                    break
                i = _next(text, decoder, value)
            else:
                break
            found = value
        elif text.startswith("[", i) and segment.isdigit():
            i = _blank(text, i + 1)
            for _ in range(int(segment)):
                if i >= len(text) or text[i] == "]":
                    break
                i = _next(text, decoder, i)
            if i >= len(text) or text[i] == "]":
                break
            found = i
        else:
            break
    return text.count("\n", 0, found) + 1


def _blank(text: str, i: int) -> int:
    while i < len(text) and text[i] in " \t\r\n":
        i += 1
    return i


def _next(text: str, decoder: json.JSONDecoder, i: int) -> int:
    """Past the value at `i` and the comma after it."""
    _, end = decoder.raw_decode(text, i)
    end = _blank(text, end)
    return _blank(text, end + 1) if text.startswith(",", end) else end
