"""The shadow proxy's offline form: a recording replayed through a fresh mock (`returns-mock drift`)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from mockserver.contract import masking
from mockserver.domain.clock import parse_instant
from mockserver.providers.provider import Credentials, Provider
from mockserver.verify.har import recorded_exchange
from mockserver.web.mirror import Mirror

REPLAY_ACCOUNTS = {"api_key": "zl_test_replayed", "username": "replayed", "password": "replayed"}
"""The credentials a replayed request is sent with where the recording does not name its account (a
recording never holds credentials: they are masked)."""


def replay(entries: list[Any], providers: Mapping[str, Provider], accounts: Mapping[str, str],
           ignore: Sequence[str] = (), seed: Any = None) -> Mirror:
    """A recording's exchanges applied, in order, to a fresh mock (seeded with `seed`, a scenario, first):
    the shadow whose log says where the mock's answers differ from the recorded ones. Raises HarError
    for an entry that is not an exchange."""
    shadow = Mirror(ignore, size=max(len(entries), 1), clock="frozen")
    clock: Any = shadow.mock.clock
    first = next((e.get("startedDateTime") for e in entries if isinstance(e, dict)), None)
    if isinstance(first, str):
        _move(clock, first, start=True)
    if seed is not None:
        shadow.mock.seed(seed)
    for index, entry in enumerate(entries):
        recorded = recorded_exchange(entry, f"log.entries[{index}]")
        if recorded is None:
            continue
        if isinstance(entry.get("startedDateTime"), str):  # the mock answers at the instant the provider did
            _move(clock, entry["startedDateTime"])
        provider = providers.get(recorded.provider)
        if provider is None or provider.name not in shadow.mock.backends:
            continue
        account = accounts.get(provider.name) or entry.get("_account")
        given = {"api_key": account, "username": account} if account else {}
        credentials = Credentials(**{**REPLAY_ACCOUNTS, **given})
        headers = [(k, v) for k, v in recorded.headers if k.lower() not in ("authorization", "content-length", "host")]
        headers += list(provider.auth_headers(credentials).items())
        found = provider.contract.match(recorded.method, recorded.path)
        shown = (masking.account_hint(credentials.api_key or "") if shadow.faces[provider.name].secret_accounts
                 else credentials.username)
        shadow.apply(provider.name, found[0] if found else None, recorded.method,
                     provider.mock_prefix + recorded.path,
                     recorded.query, headers, recorded.request_body or b"", recorded.status,
                     recorded.response_body or b"", shown)
    return shadow


def _move(clock: Any, instant: str, start: bool = False) -> None:
    try:
        moment = parse_instant(instant)
    except ValueError:
        return
    if start or moment > clock.now():  # then never backwards: what the mock decided stays decided
        clock.set(moment)
