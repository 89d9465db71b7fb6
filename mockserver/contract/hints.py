"""What a mistyped path most likely meant: the served path that shares its longest tail with it (a client
that kept the real API's base path, or a prefix with a segment missing), else the closest spelling."""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable, Mapping

_PARAMETER = re.compile(r"<(?:\w+:)?\w+>|\{\w+\}")
"""A path parameter, as Flask writes it (`<id>`) or OpenAPI (`{id}`)."""


def closest_path(path: str, templates: Iterable[str]) -> str | None:
    """Among served path templates (`/3plship/api/v1/returns/<id>/status`), the concrete path PATH most
    likely meant, or None. A template's parameters take the request's own segments; catch-all rules
    (`<path:...>`) are not paths anyone means."""
    asked = path.rstrip("/").split("/")
    scores: list[tuple[int, float, str]] = []
    spellings: list[str] = []
    for template in templates:
        if "<path:" in template or template == "/":
            continue
        parts = template.rstrip("/").split("/")
        matched = literal = 0
        while matched < min(len(parts), len(asked)) - 1:
            mine, theirs = parts[-1 - matched], asked[-1 - matched]
            if not _PARAMETER.fullmatch(mine) and mine != theirs:
                break
            literal += mine == theirs
            matched += 1
        head = parts[:len(parts) - matched]
        if literal and not _PARAMETER.search("/".join(head)):
            ratio = difflib.SequenceMatcher(None, "/".join(asked[:len(asked) - matched]), "/".join(head)).ratio()
            scores.append((matched, ratio, "/".join(head + asked[len(asked) - matched:])))
        if len(parts) == len(asked):  # a spelling to compare with, its parameters the request's segments
            spellings.append("/".join(theirs if _PARAMETER.fullmatch(mine) else mine
                                      for mine, theirs in zip(parts, asked, strict=True)))
        elif not _PARAMETER.search(template):
            spellings.append(template)
    if scores:
        best = max(scores)
        tied = {path for matched, ratio, path in scores if (matched, ratio) == best[:2]}
        return best[2] if len(tied) == 1 else None  # /returns: either provider's, or the control plane's
    # Else a misspelling: compared past the segments both share, so that a shared prefix alone
    # (/3plship/api/v1/nothing against /3plship/api/v1/returns) is no likeness.
    scored = [(_likeness(asked, spelling.split("/")), spelling) for spelling in spellings if spelling != path]
    likeness, spelling = max(scored, default=(0.0, ""))
    return spelling if likeness >= 0.75 else None


def _likeness(asked: list[str], served: list[str]) -> float:
    shared = 0
    while shared < min(len(asked), len(served)) and asked[shared] == served[shared]:
        shared += 1
    return difflib.SequenceMatcher(None, "/".join(asked[shared:]), "/".join(served[shared:])).ratio()


def unknown_path(method: str, path: str, prefixes: Mapping[str, str], templates: Iterable[str]) -> str:
    """The message for a path nothing serves: where each provider is served, and the closest served path."""
    closest = closest_path(path, templates)
    places = [f"{name} under {prefix}" for name, prefix in prefixes.items()]
    where = " and ".join([", ".join(places[:-1]), places[-1]] if len(places) > 1 else places)
    return (f"No such resource: {method} {path}. This mock serves {where}"
            + (f"; did you mean {closest}?" if closest else "."))
