"""What a proxy is told: its upstreams, limits, recording and shadowing."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass


@dataclass(frozen=True)
class ProxyConfig:
    upstreams: dict[str, str]
    """Provider name -> the upstream's base URL, e.g. {"3plship": "https://app.3plship.com/api/v1"}."""
    timeout_ms: int = 5000
    """The whole exchange with the upstream, connecting to the answer's last byte (else 504)."""
    max_answer_bytes: int = 8 * 1024 * 1024
    """An upstream answer larger than this once decoded is cut off while it streams and answered 502."""
    strict: bool = False
    """Refuse (422, not forwarded) a request that breaks the contract."""
    record: str | None = None
    admin_token: str | None = None
    journal_size: int = 1000
    allowed_hosts: list[str] | None = None
    """As the mock's Config.allowed_hosts: None answers any Host."""
    shadow: bool = False
    """Also apply every exchange to a mock mirroring the upstream, and record where the answers differ."""
    drift_ignore: tuple[str, ...] = ()
    """JSON pointers (`*`: any one segment) the shadow's comparison leaves out, beside the contracts' noise."""
    drift_size: int = 16 * 1024 * 1024
    """Bytes of drift entries kept (their JSON); the oldest go first."""

    def to_env(self) -> str:
        return json.dumps(asdict(self))
