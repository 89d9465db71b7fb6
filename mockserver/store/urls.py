"""Store URLs as they may be shown: in logs, banners and errors, never with a password."""

from __future__ import annotations

import re

from mockserver.contract.masking import USERINFO, USERINFO_MASK, userinfo

POSTGRES = ("postgresql://", "postgres://")

MASK = USERINFO_MASK
# Query parameters of a libpq URL that carry a secret (password=, sslpassword=) or point at one.
_SECRET_PARAMETER = re.compile(r"(?i)([?&](?:ssl)?password=)[^&#]*")


def shown(url: str) -> str:
    """The store URL as it may be shown (logs, banners, errors): any password masked, whether in the
    userinfo, in a `password=` parameter, or malformed (a bad escape, a bad port: never parsed here)."""
    return _SECRET_PARAMETER.sub(lambda m: m.group(1) + MASK, userinfo(url))


def secrets_of(url: str) -> list[str]:
    """The secrets a URL carries as written (and percent-decoded), so that an error message from a
    library that echoes them can be masked too."""
    from urllib.parse import unquote

    found = [m.group(2).split(":", 1)[1] for m in [USERINFO.match(url)] if m and ":" in m.group(2)]
    found += [m.group(0).split("=", 1)[1] for m in _SECRET_PARAMETER.finditer(url)]
    return [s for secret in found if secret for s in {secret, unquote(secret)} if s]


def masked(text: str, url: str) -> str:
    """`text` (an error message about `url`) with every secret of the URL masked."""
    for secret in sorted(secrets_of(url), key=len, reverse=True):
        text = text.replace(secret, MASK)
    return text
