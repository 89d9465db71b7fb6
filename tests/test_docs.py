"""The documentation's own facts: one version string with a changelog entry, and the reference pages as the
code writes them."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tomllib

from helpers import ROOT

from mockserver.version import __version__


def test_the_version_is_one_string_and_the_changelog_names_it() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert "version" not in project["project"] and "version" in project["project"]["dynamic"]
    assert project["tool"]["hatch"]["version"]["path"] == "mockserver/version.py"
    releases = re.findall(r"^## (\d+\.\d+\.\d+\S*) \(\d{4}-\d{2}-\d{2}\)$", (ROOT / "CHANGELOG.md").read_text(), re.M)
    assert releases[0] == __version__, "the newest release in CHANGELOG.md is the package's version"
    assert len(releases) == len(set(releases)), "one entry per release"
    headings = re.findall(r"^## (.+)$", (ROOT / "CHANGELOG.md").read_text(), re.M)
    assert headings[0] in ("Unreleased", f"{__version__} ({headings[0].split('(')[-1]}"), headings


def test_the_generated_reference_is_what_the_code_says() -> None:
    """docs/reference/{cli,admin-api,configuration}.md and docs/fidelity.md are written from the parser, the
    admin contracts, the Makefile, the pytest plugin and the contracts' x-provenance: a flag, route or mark
    added without `make reference` fails here."""
    checked = subprocess.run([sys.executable, str(ROOT / "tools" / "reference.py"), "--check"], capture_output=True,
                             text=True, timeout=120, env={**os.environ, "RETURNS_MOCK_STORE": "memory"})
    assert checked.returncode == 0, checked.stderr


def test_the_reference_says_what_the_parser_and_the_contracts_hold() -> None:
    cli = (ROOT / "docs" / "reference" / "cli.md").read_text()
    for flag in ("--prot", "--port", "--3plship-key", "--35up-user", "--drift-ignore", "--compare-mock"):
        assert (f"`{flag}`" in cli) == (flag != "--prot"), flag
    admin = (ROOT / "docs" / "reference" / "admin-api.md").read_text()
    assert "`POST /__admin/clock`" in admin and "`GET /__admin/openapi.json`" in admin
    configuration = (ROOT / "docs" / "reference" / "configuration.md").read_text()
    assert "`RETURNS_MOCK_STORE`" in configuration and "`--returns-mock-fuzz N`" in configuration
    fidelity = (ROOT / "docs" / "fidelity.md").read_text()
    assert "https://www.3plship.com/developers/docs/rate-limits" in fidelity and "| inferred |" in fidelity
