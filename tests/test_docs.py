"""The documentation's own facts: one version string, a changelog entry for it."""

from __future__ import annotations

import re
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
