"""Store strings as they may be shown: in logs, banners, errors, `/` and `/__admin/health`, never with a
password, whichever form carries it.

The forms: a URL's userinfo (`postgresql://user:PW@host/db`, the password written raw or percent-encoded,
even with an unencoded `@`, `/` or `?` in it), a libpq parameter in its query (`?password=PW`,
`sslpassword`, the name itself percent-encoded), and a libpq key=value string (`host=h password=PW`,
`password='P W'`). A password is masked as a whole: in a message from a library that echoes it, only
where it stands as a token of its own, never as letters inside other words.
"""

from __future__ import annotations

import re
from urllib.parse import unquote

POSTGRES = ("postgresql://", "postgres://")

MASK = "***"
_SECRET_NAMES = frozenset({"password", "sslpassword"})
_SCHEME = re.compile(r"^[a-z][a-z0-9+.-]*://", re.I)
_QUERY_START = re.compile(r"\?[A-Za-z0-9_%]+=")
_QUERY_PARAMETER = re.compile(r"([?&])([^=&#]*)=([^&#]*)")
# key=value: a value is quoted ('...', backslash escapes) or runs to the next space (libpq's conninfo).
_KEYWORD = re.compile(r"(?i)(?<![^\s])((?:ssl)?password)(\s*=\s*)('(?:[^'\\]|\\.)*'?|[^\s]*)")
_WORD = "A-Za-z0-9_"
_PIECES = re.compile(r"[@/?#:]")
"""Where libpq may cut a password written unencoded in a URL (its pieces can each show up in its errors)."""


def _split_url(store: str) -> tuple[str, str, str] | None:
    """A URL's scheme, userinfo (without its `@`; empty if none) and the rest, or None for no URL.

    The userinfo ends at its last `@` before the query (a `?name=` after a `/`): a password written with an
    unencoded `@` is masked whole (libpq, cutting at the first, echoes its tail as the host), and so is one
    with a `?`; an `@` in the query (`application_name=ci@runner`) is the query's."""
    scheme = _SCHEME.match(store)
    if scheme is None:
        return None
    after = store[scheme.end():]
    slash = after.find("/")
    query = _QUERY_START.search(after, slash) if slash >= 0 else None
    end = query.start() if query is not None else len(after)
    at = after.rfind("@", 0, end)
    if at < 0:
        return scheme.group(0), "", after
    return scheme.group(0), after[:at], after[at + 1:]


def shown(store: str) -> str:
    """The store string as it may be shown: any password masked, whatever the form, parsing nothing that
    could fail (a bad escape or port is still shown, and still masked)."""
    url = _split_url(store)
    if url is not None:
        scheme, userinfo, rest = url
        user, colon, _ = userinfo.partition(":")
        head = f"{scheme}{user}{':' + MASK if colon else ''}@" if userinfo else scheme
        return head + _QUERY_PARAMETER.sub(_masked_parameter, rest)
    if store.startswith(("sqlite:", "memory")):
        return store
    return _KEYWORD.sub(lambda m: m.group(1) + m.group(2) + MASK, store)


def _masked_parameter(m: re.Match[str]) -> str:
    secret = unquote(m.group(2)).strip().lower() in _SECRET_NAMES
    return f"{m.group(1)}{m.group(2)}={MASK if secret else m.group(3)}"


def secrets_of(store: str) -> list[str]:
    """The secrets a store string carries, as written and decoded (and, where a URL's password could be
    cut by libpq, its pieces), so that a message from a library that echoes them can be masked too."""
    found: list[str] = []
    url = _split_url(store)
    if url is not None:
        password = url[1].partition(":")[2]
        found += [password, *_PIECES.split(password)]
        found += [m.group(3) for m in _QUERY_PARAMETER.finditer(store)
                  if unquote(m.group(2)).strip().lower() in _SECRET_NAMES]
    elif not store.startswith(("sqlite:", "memory")):
        for m in _KEYWORD.finditer(store):
            value = m.group(3)
            found.append(value)
            if value.startswith("'"):
                found.append(re.sub(r"\\(.)", r"\1", value.strip("'")))
    return sorted({s for secret in found if secret for s in (secret, unquote(secret)) if s}, key=len, reverse=True)


def masked(text: str, store: str) -> str:
    """`text` (a message about `store`) with every secret of the store string masked where it stands as a
    token of its own: a one-letter password leaves `connection failed` as it is."""
    for secret in secrets_of(store):
        text = re.sub(rf"(?<![{_WORD}]){re.escape(secret)}(?![{_WORD}])", MASK, text)
    return text
