"""The shadow proxy's offline form: a recording replayed through a fresh mock (`returns-mock drift`), to the
same report the live shadow gave on the same traffic.

A `returns-mock proxy --record` file says which provider each exchange belongs to (`_provider`, whatever
the upstream's host), whether the upstream answered it (`_answered_by`: the proxy's own refusals and 502s
are not the provider's), the order the upstream answered in (`_sequence`), and the account its credentials
named without the credentials themselves: a username as it is (`_account`), an API key as a stable
identity (`_account_id`, with `_account_hint` as shown). Each account is replayed as an account of its own
(an identity becomes a key of that provider's form), and credentials the provider's rules refused (none
recorded) are replayed as refused. A HAR from elsewhere is matched by host (`hosts`: `--provider-host`);
its Authorization headers are replayed as they are where they name an account, else as one account per
provider (`accounts`: `--har-account`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any
from urllib.parse import unquote

from mockserver.providers.provider import Credentials, Provider
from mockserver.proxy.recording import shown_account
from mockserver.verify.har import HarError, Recorded, recorded_exchange
from mockserver.web.mirror import Mirror

REPLAY_ACCOUNTS = {"api_key": "zl_test_replayed", "username": "replayed", "password": "replayed"}
"""The credentials a replayed request is sent with where the recording names no account and its own cannot
be used (a recording never holds credentials: they are masked)."""


def replay(entries: list[Any], providers: Mapping[str, Provider], accounts: Mapping[str, str],
           ignore: Sequence[str] = (), seed: Any = None, hosts: Mapping[str, str] | None = None,
           name: str = "the recording") -> Mirror:
    """A recording's exchanges applied, in the order the upstream answered them, to a fresh mock (seeded with
    `seed`, a scenario, first): the shadow whose log says where the mock's answers differ from the recorded
    ones. Raises HarError for an entry that cannot be used, or when no exchange belongs to a provider."""
    found: list[tuple[int, Recorded]] = []
    for index, entry in enumerate(entries):
        recorded = recorded_exchange(entry, f"log.entries[{index}]", hosts)
        if recorded is not None and recorded.provider in providers:
            found.append((index, recorded))
    if not found:
        known = ", ".join(f"{p.real_base_url or p.name} or the mock's {p.mock_prefix}" for p in providers.values())
        raise HarError(f"no exchange of {name} belongs to a known provider ({known}); give --provider-host "
                       f"HOST=PROVIDER for a recording made in front of another host")
    replayed = [r for _, r in found if not r.answered_by_proxy]
    if all(r.sequence is not None for r in replayed):
        replayed.sort(key=lambda r: r.sequence or 0)
    shadow = Mirror(ignore, size=max(len(replayed), 1))
    first = next((r.started for r in replayed if r.started is not None), None)
    if first is not None:
        shadow.clock.set(first)
    if seed is not None:
        shadow.mock.seed(seed)
    for recorded in replayed:
        provider = providers[recorded.provider]
        face = shadow.faces[provider.name]
        authorization, shown = _credentials(recorded, provider, face, accounts.get(provider.name))
        headers = [(k, v) for k, v in recorded.headers if k.lower() not in ("authorization", "content-length", "host")]
        if authorization is not None:
            headers.append(("Authorization", authorization))
        shadow.apply(provider.name, recorded.method, provider.mock_prefix + unquote(recorded.path), recorded.query,
                     headers, recorded.request_body or b"", recorded.status, recorded.response_headers,
                     recorded.response_body or b"", shown, recorded.started)
    return shadow


def _credentials(recorded: Recorded, provider: Provider, face: Any, given: str | None) -> tuple[str | None, str | None]:
    """The Authorization a recorded request is replayed with, and its account as reports show it."""
    original = next((v for k, v in recorded.headers if k.lower() == "authorization"), None)
    if recorded.by_proxy:  # the proxy recorded what account the credentials named, if any
        if recorded.account_id is not None:
            hint = recorded.account_hint or ""
            prefix = hint.partition("***")[0] if "***" in hint else REPLAY_ACCOUNTS["api_key"].rpartition("_")[0] + "_"
            key = given or f"{prefix}{recorded.account_id}"
            return _authorization(provider, Credentials(api_key=key, username=key)), recorded.account_hint
        if recorded.account is not None:
            account = given or recorded.account
            credentials = Credentials(api_key=account, username=account, password=REPLAY_ACCOUNTS["password"])
            return _authorization(provider, credentials), recorded.account
        return original, None  # refused by the provider's rules (or none): masked, refused again
    if given is not None:
        credentials = Credentials(api_key=given, username=given, password=REPLAY_ACCOUNTS["password"])
        return _authorization(provider, credentials), shown_account(face, face.rate_key(_authorization(provider,
                                                                                                     credentials)))
    named = face.rate_key(original)
    if named is not None or recorded.status in (401, 403):  # usable as recorded, or refused as recorded
        return original, shown_account(face, named)
    authorization = _authorization(provider, Credentials(**REPLAY_ACCOUNTS))
    return authorization, shown_account(face, face.rate_key(authorization))


def _authorization(provider: Provider, credentials: Credentials) -> str | None:
    return provider.auth_headers(credentials).get("Authorization")
