"""The `returns-mock` command."""

from __future__ import annotations

import argparse
import dataclasses
import difflib
import json
import os
import re
import sys
from pathlib import Path
from typing import Any, NoReturn

import orjson

from mockserver.contract import contract
from mockserver.contract.drift import DRIFT_SIZE
from mockserver.contract.errors import StoreError
from mockserver.contract.masking import url as masked_url
from mockserver.domain.config import ADMIN_MAX_BODY, CONNECTIONS_CAP, ENV_VAR, Config, Limits
from mockserver.domain.flags import positive, up_to
from mockserver.domain.ratelimit import RatePolicy
from mockserver.flag_files import UsageError, check_writable, read_file
from mockserver.providers.registry import REGISTRY
from mockserver.store import open_store, shown
from mockserver.version import __version__

DETERMINISTIC_START = "2026-01-01T00:00:00.000Z"

TOKEN_ENV = "RETURNS_MOCK_ADMIN_TOKEN"
STORE_ENV = "RETURNS_MOCK_STORE"


class _Parser(argparse.ArgumentParser):
    """argparse, but a bad flag is one line on stderr and exit code 2, naming the closest flag, subcommand
    or choice when one is close."""

    def error(self, message: str) -> NoReturn:
        choice = re.match(r"argument .*: invalid choice: '(.*)' \(choose from (.*)\)$", message)
        if choice is not None:
            message += _did_you_mean(choice.group(1), re.findall(r"'([^']*)'", choice.group(2)))
        raise UsageError(message)

    def parse_known_args(  # type: ignore[override]
            self, args: Any = None, namespace: Any = None) -> tuple[argparse.Namespace, list[str]]:
        parsed, extras = super().parse_known_args(args, namespace)
        if extras and self._subparsers is not None:  # the top parser: the subcommand's flags are the ones meant
            used = self
            for action in self._subparsers._group_actions:
                if isinstance(action, argparse._SubParsersAction):
                    used = action.choices.get(getattr(parsed, action.dest, None) or "", self)
            flags = [flag for action in used._actions for flag in action.option_strings]
            mistyped = next((extra.split("=", 1)[0] for extra in extras if extra.startswith("-")), None)
            if mistyped is not None and (hint := _did_you_mean(mistyped, flags)):
                self.error(f"unrecognized arguments: {' '.join(extras)}{hint}")
        return parsed, extras


def _did_you_mean(given: str, known: list[str]) -> str:
    close = difflib.get_close_matches(given, known, n=1, cutoff=0.6)
    return f" (did you mean {close[0]}?)" if close else ""


def _port(text: str) -> int:
    value = positive(text)
    if value > 65535:
        raise argparse.ArgumentTypeError(f"a port is at most 65535, got {text!r}")
    return value


def _url(text: str) -> str:
    from urllib.parse import urlsplit

    parts = urlsplit(text)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise argparse.ArgumentTypeError(f"expected an http(s) URL, got {masked_url(text)!r}")
    return text


def _rate(text: str) -> str:
    try:
        RatePolicy.parse(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return text


def build_parser() -> argparse.ArgumentParser:
    names = REGISTRY.names()
    parser = _Parser(prog="returns-mock",
                     description=f"Contract-checked, stateful mock of the {' and '.join(names)} returns APIs.")
    parser.add_argument("--version", action="version", version=f"returns-mock {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)

    serve = commands.add_parser("serve", help="serve every provider over HTTP",
                                description="Serve every provider under a production server (granian, RSGI: "
                                            "slow clients and latency faults hold no worker).")
    serve.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    serve.add_argument("--port", type=_port, default=8080, help="port (default 8080)")
    serve.add_argument("--store", default=os.environ.get(STORE_ENV, "sqlite:returns-mock.db"),
                       help="'sqlite:PATH' (state survives restarts; default sqlite:returns-mock.db), 'memory', or "
                            "'postgresql://USER[:PASSWORD]@HOST[:PORT]/DB' (replicas sharing one database; the "
                            f"postgres extra; a password may also come from $PGPASSWORD); also from ${STORE_ENV}, "
                            "which keeps a password out of ps")
    serve.add_argument("--workers", type=up_to(256), default=None,
                       help="worker processes (default: one per CPU, two with a postgresql store; "
                            "1 with --store memory)")
    _serving_flags(serve, max_body=1024 * 1024, why="the providers' limit, emulated")
    serve.add_argument("--seed", type=int, default=None, help="seed the ids the mock mints (ret_..., req_...)")
    serve.add_argument("--clock", choices=("real", "frozen"), default=None,
                       help="real: ticking time (default); frozen: moves only through POST /__admin/clock")
    serve.add_argument("--seed-file", metavar="FILE",
                       help="preload returns from a scenario file (see fixtures/scenarios/), or from a HAR recording "
                            "(returns-mock proxy --record) in the last state it shows; checked whole first")
    serve.add_argument("--har-account", dest="har_accounts", action="append", default=[], type=_assignment,
                       metavar="PROVIDER=ACCOUNT",
                       help="with a HAR --seed-file: the account its returns go to (repeatable; needed where the "
                            "recording cannot name it, e.g. 3plship, whose accounts are API keys)")
    serve.add_argument("--deterministic", type=int, metavar="SEED", default=None,
                       help=f"ids and request ids from SEED, a frozen clock from {DETERMINISTIC_START}, one worker: "
                            "the same requests give byte-identical answers")
    serve.add_argument("--vary", type=up_to(2**64 - 1), metavar="SEED", default=None,
                       help="vary every answer within the contract (nullable fields null, optional ones left out, "
                            "strings at their bounds, documented 429/500/503), reproducibly from SEED; the journal "
                            "says what was varied")
    serve.add_argument("--admin-token", metavar="TOKEN",
                       help="require Authorization: Bearer TOKEN on /__admin (needed to bind a non-loopback host); "
                            f"visible to every user in ps: prefer --admin-token-file or ${TOKEN_ENV}")
    serve.add_argument("--admin-token-file", metavar="FILE",
                       help="the admin token, read from FILE (its first line)")
    serve.add_argument("--allow-host", dest="allowed_hosts", action="append", default=[], metavar="NAME",
                       help="bound to loopback, also answer requests for Host NAME, e.g. host.docker.internal "
                            "(repeatable); other names are refused, against DNS rebinding")
    serve.add_argument("--rate-limit", type=_rate, metavar="N/PERIOD", action="append",
                       help="enforce a rate limit per API key on the providers that document one, e.g. 1000/hour; "
                            "repeat it (or separate with commas) for several windows at once, e.g. 100/minute "
                            "and 5000/hour; without it requests are counted at 1000/hour but never refused")
    serve.add_argument("--faults", metavar="FILE",
                       help="fault rules to start with (contracts/admin/fault-rule.json; one rule or a list)")
    serve.add_argument("--chaos", choices=("light", "heavy"),
                       help="a mix of latency, 429s, 5xx and dropped connections (contracts/admin/chaos.json); "
                            "reproducible with --deterministic")
    serve.add_argument("--allow-webhook-host", dest="webhook_hosts", action="append", default=[], metavar="HOST",
                       help="also deliver webhooks to HOST (repeatable); by default only loopback hosts, and none "
                            "when the mock listens beyond loopback")
    serve.add_argument("--webhook-subscriptions-per-account", type=up_to(100_000), default=20, metavar="N",
                       help="webhook subscriptions one account may hold; the next is refused with 409 (default 20)")
    serve.add_argument("--webhook-faults", metavar="FILE",
                       help="webhook delivery fault rules to start with (contracts/admin/webhook-fault-rule.json; "
                            "one rule or a list): duplicates, out-of-order, delayed and replayed deliveries")
    serve.add_argument("--webhook-chaos", choices=("light", "heavy"),
                       help="a mix of duplicated, reordered, delayed and replayed webhook deliveries "
                            "(contracts/admin/webhook-chaos.json); reproducible with --deterministic")
    serve.add_argument("--autopilot", action="append", default=[], metavar="FILE|PRESET",
                       help="the provider's own moves on the mock's clock: a schedule file "
                            "(contracts/admin/autopilot-file.json) or a preset of a provider's contract, e.g. "
                            "warehouse (3plship: received 3 business days after creation, inspected 1 later)")
    serve.add_argument("--webhook-attempts", type=up_to(100), default=6, help="delivery attempts per event (6)")
    serve.add_argument("--webhook-backoff-ms", type=up_to(86_400_000), default=1000,
                       help="wait before the first retry, doubling after each (1000)")
    serve.add_argument("--webhook-timeout-ms", type=up_to(600_000), default=5000, help="per attempt (5000)")
    serve.add_argument("--journal-size", type=up_to(10_000_000), default=1000,
                       help="requests kept in the journal (default 1000; the oldest go first)")
    serve.add_argument("--self-check", action="store_true",
                       help="validate every response against the contract (a mismatch answers 500)")
    for provider in REGISTRY:
        provider.add_arguments(serve)

    check = commands.add_parser(
        "verify", help="run a provider's contract suite against any implementation",
        description="Schemathesis over the provider's contract plus scripted lifecycle scenarios, against the "
                    "implementation at --base-url (this mock, a sandbox, a real account: scenarios create "
                    "returns there). Exit 0: no violations; 1: violations; 2: usage or unreachable target.")
    check.add_argument("--provider", choices=names, required=True)
    examples = [url for p in REGISTRY for url in (f"http://127.0.0.1:8080{p.mock_prefix}", p.real_base_url) if url]
    check.add_argument("--base-url", required=True, type=_url, help=f"e.g. {' or '.join(examples[:2])}")
    for credential, what in (("api_key", "an API key"), ("username", "a Basic auth username"),
                             ("password", "a Basic auth password")):
        users = [p.name for p in REGISTRY if credential in p.credentials]
        check.add_argument(f"--{credential.replace('_', '-')}", help=f"{', '.join(users) or 'no provider'}: {what}")
    check.add_argument("--max-examples", type=up_to(1_000_000), default=20, help="schemathesis examples per operation")
    check.add_argument("--seed", type=int, default=None, help="schemathesis seed, to repeat a run")
    _ci_reports(check)
    check.add_argument("--compare-mock", action="store_true",
                       help="also apply the lifecycle scenarios' requests, in the same order, to a fresh local mock "
                            "and report every difference of its answers from the target's (as proxy --shadow)")
    check.add_argument("--drift-ignore", dest="drift_ignore", action="append", default=[], type=_pointer,
                       metavar="POINTER", help="with --compare-mock: leave this JSON pointer out of the comparison "
                                               "(repeatable; * matches any one segment, e.g. /data/*/carrier)")

    har = commands.add_parser(
        "validate-har", help="check recorded traffic (HAR 1.2) against the contracts",
        description="Match each entry to a provider operation by host and path (the real base URLs, "
                    f"{', '.join(p.real_base_url or '' for p in REGISTRY)}, or the mock's prefixes, "
                    f"{', '.join(p.mock_prefix for p in REGISTRY)}), validate its request and response, "
                    "and report every violation. Other entries are counted and skipped. Exit 0: none; 1: "
                    "violations; 2: unusable file.")
    har.add_argument("file", help="a .har file exported by a browser, mitmproxy, Charles, Postman, schemathesis...")
    har.add_argument("--format", choices=("text", "json"), default="text")
    _har_input(har)
    _ci_reports(har)

    proxy = commands.add_parser(
        "proxy", help="a validating proxy in front of the real providers, with recording",
        description="Serve each provider under the mock's paths and forward every request to its upstream "
                    "unchanged, checking the request (the client) and the response (the provider) against the "
                    "contracts: /__admin/violations lists both. Give at least one upstream.")
    for provider in REGISTRY:
        example = provider.real_base_url or "https://..."
        proxy.add_argument(f"--{provider.name}-upstream", dest=f"upstream_{provider.name}", type=_url, metavar="URL",
                           help=f"{provider.name}'s base URL to forward to, e.g. {example}")
    proxy.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    proxy.add_argument("--port", type=_port, default=8080, help="port (default 8080)")
    proxy.add_argument("--record", metavar="FILE", help="write every exchange to FILE as HAR 1.2, credentials redacted")
    _serving_flags(proxy, max_body=16 * 1024 * 1024, why="not forwarded")
    proxy.add_argument("--upstream-timeout-ms", type=up_to(600_000), default=5000,
                       help="answer 504 when the whole exchange with the upstream, connecting to its answer's "
                            "last byte, takes longer (default 5000)")
    proxy.add_argument("--max-answer-bytes", type=up_to(1024 * 1024 * 1024), default=8 * 1024 * 1024, metavar="N",
                       help="an upstream answer larger than N bytes once decoded is cut off and answered 502 "
                            "(default 8388608)")
    proxy.add_argument("--strict", action="store_true",
                       help="refuse a request that breaks the contract with the provider's 422 (not forwarded)")
    proxy.add_argument("--admin-token", metavar="TOKEN",
                       help="require Authorization: Bearer TOKEN on /__admin (needed to bind a non-loopback host); "
                            f"visible to every user in ps: prefer --admin-token-file or ${TOKEN_ENV}")
    proxy.add_argument("--admin-token-file", metavar="FILE",
                       help="the admin token, read from FILE (its first line)")
    proxy.add_argument("--allow-host", dest="allowed_hosts", action="append", default=[], metavar="NAME",
                       help="bound to loopback, also answer requests for Host NAME (repeatable)")
    proxy.add_argument("--journal-size", type=up_to(10_000_000), default=1000, help="exchanges kept in the journal")
    proxy.add_argument("--shadow", action="store_true",
                       help="also apply every exchange to a mock mirroring the upstream (ids adopted) and report where "
                            "the two answers differ: GET /__admin/drift")
    proxy.add_argument("--drift-ignore", dest="drift_ignore", action="append", default=[], type=_pointer,
                       metavar="POINTER", help="with --shadow: leave this JSON pointer out of the comparison "
                                               "(repeatable; * matches any one segment, e.g. /data/*/carrier)")
    proxy.add_argument("--drift-size", type=up_to(2**40), default=None, metavar="BYTES",
                       help="with --shadow: bytes of drift entries kept (their JSON; the oldest go first; long values "
                            f"in them are cut, saying so; default {DRIFT_SIZE})")

    drift = commands.add_parser(
        "drift", help="replay a recording through a fresh mock and report where its answers differ",
        description="Apply every exchange of a HAR recording (returns-mock proxy --record, or any HAR of these APIs), "
                    "in order, to a fresh mock, and compare the mock's answers with the recorded ones as proxy "
                    "--shadow does. Exit 1 on any drift, 0 on none, 2 on an unusable file.")
    drift.add_argument("file", help="a .har file")
    drift.add_argument("--format", choices=("text", "json"), default="text")
    drift.add_argument("--seed-file", metavar="FILE", help="a scenario to seed the mock with first, as serve's")
    drift.add_argument("--har-account", dest="har_accounts", action="append", default=[], type=_assignment,
                       metavar="PROVIDER=ACCOUNT", help="the account a provider's replayed requests are sent as "
                                                        "(repeatable; by default the recording's, or one of its own)")
    drift.add_argument("--drift-ignore", dest="drift_ignore", action="append", default=[], type=_pointer,
                       metavar="POINTER", help="leave this JSON pointer out of the comparison (repeatable; * matches "
                                               "any one segment)")
    _har_input(drift)
    _ci_reports(drift)

    trigger = commands.add_parser(
        "trigger", help="send a webhook event built from a return a running mock holds",
        description="Ask a running mock (POST /__admin/webhooks/trigger) to send EVENT built from the stored return "
                    "RETURN as the provider's own move would, to its account's subscriptions, through the delivery "
                    "faults. Prints the deliveries queued. Exit 0: queued; 1: the mock refused (its error printed); "
                    "2: a bad flag, or no mock at --url.")
    trigger.add_argument("event", metavar="EVENT", help="an event the provider sends, e.g. return.received")
    trigger.add_argument("return_id", metavar="RETURN", help="the return's id")
    trigger.add_argument("--url", type=_url, default="http://127.0.0.1:8080", help="the mock (default "
                                                                                    "http://127.0.0.1:8080)")
    trigger.add_argument("--account", help="the return's account, where several hold a return with this id")
    trigger.add_argument("--provider", help="the provider, where several hold a return with this id")
    trigger.add_argument("--override", type=_json_object, metavar="JSON",
                         help="merged into the event (JSON merge patch), then checked against its schema, e.g. "
                              "'{\"data\": {\"notes\": null}}'")
    trigger.add_argument("--admin-token", metavar="TOKEN", help=f"the mock's admin token (or ${TOKEN_ENV})")
    trigger.add_argument("--admin-token-file", metavar="FILE", help="the mock's admin token, read from FILE")

    show = commands.add_parser("openapi", help="print a provider's self-contained OpenAPI document, or the "
                                                "control plane's (admin: the /__admin API)")
    show.add_argument("provider", choices=[*names, "admin"])
    return parser


def _har_input(parser: argparse.ArgumentParser) -> None:
    from mockserver.verify.har import HAR_LIMIT

    parser.add_argument("--provider-host", dest="provider_hosts", action="append", default=[], type=_provider_host,
                        metavar="HOST=PROVIDER",
                        help="exchanges with HOST (a name, or name:port) belong to PROVIDER, e.g. "
                             "sandbox.example.com=3plship (repeatable): for recordings made in front of another "
                             "host than the provider's own (the proxy's own recordings say which provider)")
    parser.add_argument("--max-file-bytes", type=up_to(2**40), default=HAR_LIMIT, metavar="N",
                        help=f"refuse a file larger than N bytes (default {HAR_LIMIT})")


def _ci_reports(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--junit-xml", metavar="FILE", help="also write the findings as JUnit XML (a test case per "
                                                            "operation)")
    parser.add_argument("--sarif", metavar="FILE", help="also write the findings as SARIF 2.1.0, each at the line of "
                                                        "the contract it breaks (code scanning)")
    parser.add_argument("--markdown", metavar="FILE", help="also write a Markdown summary (e.g. $GITHUB_STEP_SUMMARY)")


def _outputs(args: argparse.Namespace) -> dict[str, Path | None]:
    """The report files asked for, each one this user can write (else one line and exit 2, before the run)."""
    found: dict[str, Path | None] = {}
    for name, flag in (("junit", "--junit-xml"), ("sarif", "--sarif"), ("markdown", "--markdown")):
        given = getattr(args, name.replace("junit", "junit_xml"))
        found[name] = Path(check_writable(given, flag)) if given else None
    return found


def _provider_host(text: str) -> tuple[str, str]:
    host, equals, name = text.partition("=")
    if not equals or name not in REGISTRY or not host or "/" in host:
        raise argparse.ArgumentTypeError(f"expected HOST=PROVIDER with PROVIDER one of {', '.join(REGISTRY.names())}, "
                                         f"got {text!r}")
    return host.lower().strip("[]"), name


def _json_object(text: str) -> dict[str, Any]:
    try:
        value = json.loads(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"not JSON: {exc}") from None
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError(f"expected a JSON object, got {text!r}")
    return value


def _serving_flags(parser: argparse.ArgumentParser, max_body: int, why: str) -> None:
    """The flags every server takes: how it holds its connections and requests (mockserver.web.serving)."""
    parser.add_argument("--max-body-bytes", type=up_to(2**31), default=max_body,
                        help=f"larger request bodies get 413, {why} (default {max_body})")
    parser.add_argument("--admin-max-body-bytes", type=up_to(2**31), default=ADMIN_MAX_BODY,
                        help="larger /__admin request bodies get 413, unread; at most four are read at once "
                             f"(default {ADMIN_MAX_BODY})")
    parser.add_argument("--header-timeout-ms", type=up_to(60_000), default=10_000,
                        help="close a connection whose request line and headers take longer, or that carries no "
                             "request for that long (default 10000)")
    parser.add_argument("--body-timeout-ms", type=up_to(600_000), default=10_000,
                        help="answer 408 when a request body takes longer to arrive (default 10000)")
    parser.add_argument("--max-connections", type=up_to(10_000_000), default=None, metavar="N",
                        help="connections held at once, shared out over the workers; past it the longest idle are "
                             f"closed to make room, or, all busy, new ones refused (default: what the open-file "
                             f"limit allows, at most {CONNECTIONS_CAP} a worker)")


def _limits(args: argparse.Namespace, workers: int) -> Limits:
    from mockserver.web.launch import connections_per_worker

    return Limits(header_timeout_ms=args.header_timeout_ms, body_timeout_ms=args.body_timeout_ms,
                  max_body_bytes=args.max_body_bytes, admin_max_body_bytes=args.admin_max_body_bytes,
                  max_connections=connections_per_worker(args.max_connections, workers), port=args.port)


def _pointer(text: str) -> str:
    if not text.startswith("/"):
        raise argparse.ArgumentTypeError(f"expected a JSON pointer such as /data/carrier, got {text!r}")
    return text


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
        if args.command == "serve":
            return serve(args)
        if args.command == "verify":
            return verify(args)
        if args.command == "validate-har":
            return validate_har(args)
        if args.command == "proxy":
            return run_proxy(args)
        if args.command == "drift":
            return replay_drift(args)
        if args.command == "trigger":
            return send_trigger(args)
        if args.command == "openapi":
            sys.stdout.write(orjson.dumps(contract(args.provider).bundled_openapi(),
                                          option=orjson.OPT_INDENT_2).decode() + "\n")
            return 0
        parser.print_help()
        return 2
    except UsageError as exc:
        print(f"returns-mock: error: {exc}", file=sys.stderr)
        return 2


SEED_LIMIT = 256 * 1024 * 1024  # as the control plane's own body limit for POST /__admin/seed
FAULTS_LIMIT = 16 * 1024 * 1024
TOKEN_LIMIT = 4096


def _json_file(path: str, flag: str, limit: int) -> Any:
    from mockserver.contract import json_text

    try:
        return json_text.loads(read_file(path, flag, limit))
    except (ValueError, RecursionError) as exc:
        raise UsageError(f"{flag} {path}: not JSON: {exc}") from None


def _fault_rules(path: str | None, chaos: str | None) -> list[dict[str, Any]] | None:
    from mockserver.domain.faults import chaos_profile, rule_problems

    paths = {p.name: [op.path for op in p.contract.operations] for p in REGISTRY}
    return _rules(path, "--faults", "faults-request.json", lambda loaded: rule_problems(loaded, paths),
                  chaos_profile(chaos) if chaos is not None else [])


def _webhook_fault_rules(path: str | None, chaos: str | None) -> list[dict[str, Any]] | None:
    from mockserver.domain.delivery_faults import chaos_profile, rule_problems
    from mockserver.domain.events import Events

    sent = [event for p in REGISTRY if p.contract.openapi.get("webhooks") for event in Events(p.name).sent()]
    return _rules(path, "--webhook-faults", "webhook-faults-request.json", lambda loaded: rule_problems(loaded, sent),
                  chaos_profile(chaos) if chaos is not None else [])


def _rules(path: str | None, flag: str, schema: str, never_fire: Any,
           chaos: list[dict[str, Any]]) -> list[dict[str, Any]] | None:
    """Rules to start with: a file's (one rule or a list, checked against `schema` and for rules that could
    never fire), then a chaos profile's."""
    from mockserver.contract import contract, problems

    rules: list[dict[str, Any]] = []
    if path is not None:
        loaded = _json_file(path, flag, FAULTS_LIMIT)
        found = problems(contract("admin").validator(schema), loaded) or never_fire(loaded)
        if found:
            raise UsageError(f"{flag} {path}: {found[0].message}")
        rules += loaded if isinstance(loaded, list) else [loaded]
    return [*rules, *chaos] or None


def _autopilot(given: list[str]) -> list[dict[str, Any]] | None:
    """Each --autopilot: a schedule file (one or a list), or a preset of a provider's contract by name
    (PRESET, or PROVIDER:PRESET). Checked fully when the store is prepared."""
    from mockserver.contract import contract, problems
    from mockserver.domain.autopilot import named

    schedules: list[dict[str, Any]] = []
    for value in given:
        if not os.path.exists(value):
            try:
                schedules += named(value)
            except ValueError as exc:
                raise UsageError(f"--autopilot {value}: not a file, and {exc}") from None
            continue
        loaded = _json_file(value, "--autopilot", FAULTS_LIMIT)
        found = problems(contract("admin").validator("autopilot-file.json"), loaded)
        if found:
            raise UsageError(f"--autopilot {value}: {found[0].message}")
        schedules += named(loaded)
    return schedules or None


def _prepare(store: Any, config: Config, explicit: set[str]) -> list[str]:
    """Start the store fresh (clock, rate policy, fault rules), and check (and for a shared store, apply)
    the seed file, before any worker starts. On a store that replicas share, only the settings named in
    `explicit` (given as flags on this start) are set: starting a replica never resets the others' clock,
    faults or rate policy. Answers what was set."""
    from mockserver.domain.mock import Refused
    from mockserver.providers.registry import build_mock

    try:
        mock = build_mock(dataclasses.replace(config, seed_file=None), store=store)
    except Refused as exc:
        raise UsageError(f"--autopilot: {exc.message}") from None
    try:
        return _start_fresh(mock, config, explicit)
    except Refused as exc:
        raise UsageError(f"--autopilot: {exc.message}") from None
    finally:
        mock.close()  # the workers deliver webhooks, not this process
        store.close()


def _start_fresh(mock: Any, config: Config, explicit: set[str]) -> list[str]:
    from mockserver.domain.seeding import ScenarioError

    store = mock.store
    done: list[str] = mock.start_fresh(explicit if store.replicated else None)
    if config.seed_file is None:
        return done
    document = _json_file(config.seed_file, "--seed-file", SEED_LIMIT)
    try:
        if store.shared:
            mock.seed(document)
        else:
            mock.check_scenario(document)  # checked here; the worker seeds its own store
    except ScenarioError as exc:
        raise UsageError(f"--seed-file {config.seed_file}: {exc.message}") from None
    return done


def _assignment(text: str) -> tuple[str, str]:
    name, equals, value = text.partition("=")
    if not equals or name not in REGISTRY or not value:
        raise argparse.ArgumentTypeError(f"expected PROVIDER=ACCOUNT with PROVIDER one of "
                                         f"{', '.join(REGISTRY.names())}, got {text!r}")
    return name, value


def _seed_file(path: str | None, accounts: list[tuple[str, str]]) -> str | None:
    """The scenario file to seed from: the file itself, or what a HAR recording shows, written beside."""
    if path is None:
        return None
    resolved = Path(path).resolve()
    document = _json_file(path, "--seed-file", SEED_LIMIT)
    if not (isinstance(document, dict) and "log" in document):
        return str(resolved)
    import tempfile

    from mockserver.providers.recorded import RecordingError, scenario_from_har
    from mockserver.verify.har import locate

    try:
        scenario = scenario_from_har(document, {p.name: p for p in REGISTRY}, dict(accounts), locate)
    except RecordingError as exc:
        raise UsageError(f"--seed-file {path}: {exc}") from None
    try:
        with tempfile.NamedTemporaryFile("w", prefix="returns-mock-seed-", suffix=".json", delete=False) as fh:
            json.dump(scenario, fh)
    except OSError as exc:
        raise UsageError(f"--seed-file {path}: cannot write the scenario it shows to {tempfile.gettempdir()} "
                         f"({exc.strerror}): set TMPDIR to a writable folder") from None
    import atexit

    atexit.register(os.unlink, fh.name)  # the workers read it as they start; the server outlives them
    return fh.name


def _bind_address(host: str) -> str:
    """The address to bind for --host: an IP address as given, a name (localhost, a host name) resolved,
    IPv4 first; granian binds addresses only. An unknown name is one line and exit 2."""
    import ipaddress
    import socket

    bare = host.strip("[]")
    try:
        return str(ipaddress.ip_address(bare))
    except ValueError:
        pass
    try:
        found = socket.getaddrinfo(bare, None, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError) as exc:
        raise UsageError(f"--host {host}: cannot resolve it ({getattr(exc, 'strerror', None) or exc})") from None
    found.sort(key=lambda info: info[0] != socket.AF_INET)
    return str(found[0][4][0])


def _bind(args: argparse.Namespace, why_token: str) -> tuple[str, list[str] | None]:
    """The address `serve` or `proxy` binds (--host resolved) and the Host names it answers besides loopback
    ones (None: any, when bound beyond loopback, behind the admin token). Sets args.admin_token."""
    from mockserver.web.guard import is_loopback_host

    args.admin_token = _admin_token(args)
    address = _bind_address(args.host)
    loopback = is_loopback_host(address)
    if not loopback and not args.admin_token:
        raise UsageError(f"refusing to bind {args.host} without --admin-token: {why_token}")
    from mockserver.web.launch import PortTaken, claim

    try:
        claim(address, args.port)
    except PortTaken as exc:
        raise UsageError(f"cannot listen on {args.host}:{args.port}: {exc}") from None
    # A name the user bound (a host name of this machine that resolves to loopback) is one its clients use.
    named = [] if is_loopback_host(args.host) or args.host.strip("[]") == address else [args.host]
    return address, [*args.allowed_hosts, *named] if loopback else None


def _admin_token(args: argparse.Namespace) -> str | None:
    """--admin-token, --admin-token-file or $RETURNS_MOCK_ADMIN_TOKEN, in that order; one of the flags at most."""
    if args.admin_token is not None and args.admin_token_file is not None:
        raise UsageError("give --admin-token or --admin-token-file, not both")
    if args.admin_token_file is not None:
        raw = read_file(args.admin_token_file, "--admin-token-file", TOKEN_LIMIT, secret=True)
        try:
            token = raw.decode("utf-8").splitlines()[0].strip() if raw.strip() else ""
        except UnicodeDecodeError:
            raise UsageError(f"--admin-token-file {args.admin_token_file}: not UTF-8 text") from None
        if not token:
            raise UsageError(f"--admin-token-file {args.admin_token_file}: the file is empty")
        return _usable_token(token)
    given: str | None = args.admin_token if args.admin_token is not None else os.environ.get(TOKEN_ENV) or None
    if given is not None and not given.strip():
        raise UsageError("--admin-token: the token is empty")
    return _usable_token(given) if given is not None else None


def _usable_token(token: str) -> str:
    # RFC 6750: a bearer token is ASCII (b64token); HTTP servers drop header values that are not.
    if not all("!" <= c <= "~" for c in token):
        raise UsageError("the admin token must be printable ASCII without spaces (RFC 6750): a header cannot "
                         "carry it otherwise")
    return token


def serve(args: argparse.Namespace) -> int:
    workers = args.workers
    if args.store == "memory":
        if workers not in (None, 1):
            raise UsageError("--store memory keeps state in one process: use --workers 1 or a sqlite store")
        workers = 1
    seed, clock, clock_start = args.seed, args.clock or "real", None
    if args.deterministic is not None:
        if workers not in (None, 1):
            raise UsageError("--deterministic needs one worker: concurrent workers cannot answer in a fixed order")
        if args.seed is not None or args.clock == "real":
            raise UsageError("--deterministic sets the seed and freezes the clock: drop --seed and --clock real")
        workers, seed, clock, clock_start = 1, args.deterministic, "frozen", DETERMINISTIC_START
    address, allowed_hosts = _bind(args, "anyone who can reach it could reset, seed or move the clock of this "
                                         "mock through /__admin")
    faults = _fault_rules(args.faults, args.chaos)
    webhook_faults = _webhook_fault_rules(args.webhook_faults, args.webhook_chaos)
    autopilot = _autopilot(args.autopilot)
    rate_limit = ",".join(args.rate_limit) if args.rate_limit else None
    if rate_limit is not None:
        try:
            RatePolicy.parse(rate_limit)  # each flag was checked alone; together, one limit per period
        except ValueError as exc:
            raise UsageError(f"--rate-limit: {exc}") from None
    try:
        store = open_store(args.store)  # fail here, with one line, rather than in every worker
    except StoreError as exc:
        raise UsageError(f"--store {shown(args.store)}: {exc}") from None
    workers = workers or store.workers_per_cpu * (os.cpu_count() or 1)
    config = Config(store=args.store, max_body_bytes=args.max_body_bytes, body_timeout_ms=args.body_timeout_ms,
                    seed=seed, self_check=args.self_check, vary=args.vary,
                    providers={p.name: p.options(args) for p in REGISTRY}, clock=clock, clock_start=clock_start,
                    admin_token=args.admin_token, journal_size=args.journal_size, rate_limit=rate_limit,
                    faults=faults, allow_webhook_hosts=tuple(args.webhook_hosts),
                    webhook_attempts=args.webhook_attempts, webhook_backoff_ms=args.webhook_backoff_ms,
                    webhook_timeout_ms=args.webhook_timeout_ms, workers=workers,
                    allowed_hosts=allowed_hosts, seed_file=_seed_file(args.seed_file, args.har_accounts),
                    exposed=allowed_hosts is None, webhook_faults=webhook_faults, autopilot=autopilot,
                    webhook_subscriptions_per_account=args.webhook_subscriptions_per_account)
    explicit = {name for name, given in (("clock", args.clock is not None or args.deterministic is not None),
                                         ("rate_limit", rate_limit is not None),
                                         ("faults", faults is not None),
                                         ("webhook_faults", webhook_faults is not None),
                                         ("autopilot", autopilot is not None)) if given}
    try:
        settings = _prepare(store, config, explicit)
    except StoreError as exc:  # e.g. the database went away between opening and preparing it
        raise UsageError(f"--store {shown(args.store)}: {exc}") from None
    from mockserver.web import validate_contracts

    validate_contracts()
    os.environ[ENV_VAR] = config.to_env()
    limits = _limits(args, workers)

    where = ", ".join(f"{p.name} at http://{args.host}:{args.port}{p.mock_prefix}" for p in REGISTRY)
    print(f"returns-mock {__version__}: {where} "
          f"(store {shown(args.store)}, {workers} worker{'s' if workers > 1 else ''})", flush=True)
    print(f"dashboard: http://{args.host}:{args.port}/__admin/", flush=True)
    if store.replicated:
        print("shared store: " + ("set " + ", ".join(settings) if settings else
                                  "clock, fault rules and rate policy kept as the other replicas use them"), flush=True)
    from mockserver.web.launch import run

    run("mockserver.wsgi:rsgi_from_env", asgi=False, workers=workers, address=address, port=args.port,
        limits=limits)
    return 0


def run_proxy(args: argparse.Namespace) -> int:
    from mockserver.proxy import ENV_VAR as PROXY_ENV
    from mockserver.proxy import ProxyConfig

    upstreams = {p.name: getattr(args, f"upstream_{p.name}") for p in REGISTRY
                 if getattr(args, f"upstream_{p.name}") is not None}
    if not upstreams:
        raise UsageError("give at least one upstream: " + ", ".join(f"--{p.name}-upstream URL" for p in REGISTRY))
    address, allowed_hosts = _bind(args, "the journal holds live traffic")
    record = check_writable(args.record, "--record") if args.record is not None else None
    config = ProxyConfig(upstreams=upstreams, timeout_ms=args.upstream_timeout_ms,
                         max_answer_bytes=args.max_answer_bytes, strict=args.strict,
                         record=record, admin_token=args.admin_token, journal_size=args.journal_size,
                         allowed_hosts=allowed_hosts, shadow=args.shadow, drift_ignore=tuple(args.drift_ignore),
                         drift_size=args.drift_size or DRIFT_SIZE)
    for given, flag in ((args.drift_ignore, "--drift-ignore"), (args.drift_size, "--drift-size")):
        if given and not args.shadow:
            raise UsageError(f"{flag}: only with --shadow")
    os.environ[PROXY_ENV] = config.to_env()
    limits = _limits(args, 1)
    where = ", ".join(f"{name} at http://{args.host}:{args.port}{REGISTRY[name].mock_prefix} -> {masked_url(url)}"
                      for name, url in upstreams.items())
    print(f"returns-mock {__version__} proxy: {where}" + (f" (recording to {record})" if record else "")
          + (" (shadowed by a mock: GET /__admin/drift)" if args.shadow else ""), flush=True)
    print(f"dashboard: http://{args.host}:{args.port}/__admin/", flush=True)
    # One worker: the journal and the recording are this process's. Its exchanges with the upstreams run on
    # threads of their own, each bounded by --upstream-timeout-ms: slow upstreams leave the rest free.
    from mockserver.web.launch import run

    run("mockserver.proxy:server_from_env", asgi=True, workers=1, address=address, port=args.port, limits=limits)
    return 0


def send_trigger(args: argparse.Namespace) -> int:
    import requests

    token = _admin_token(args)
    body = {"event": args.event, "return": args.return_id,
            **{name: getattr(args, name) for name in ("account", "provider", "override") if getattr(args, name)}}
    try:
        answer = requests.post(args.url.rstrip("/") + "/__admin/webhooks/trigger", json=body, timeout=30,
                               headers={"Authorization": f"Bearer {token}"} if token else {})
    except requests.RequestException as exc:
        raise UsageError(f"--url {masked_url(args.url)}: no mock answered ({type(exc).__name__})") from None
    try:
        shown = answer.json()
    except ValueError:
        raise UsageError(f"--url {masked_url(args.url)}: not a returns-mock ({answer.status_code})") from None
    if answer.status_code == 202:
        print(json.dumps(shown, indent=2))
        return 0
    error = shown.get("error", {}) if isinstance(shown, dict) else {}
    print(f"returns-mock trigger: {answer.status_code} {error.get('code', '')}: {error.get('message', shown)}",
          file=sys.stderr)
    return 1


def validate_har(args: argparse.Namespace) -> int:
    from mockserver.verify.har import HarError
    from mockserver.verify.har import validate_har as run
    from mockserver.verify.report import har_report

    outputs = _outputs(args)
    try:
        report = run(Path(args.file), dict(args.provider_hosts), args.max_file_bytes)
    except HarError as exc:
        raise UsageError(str(exc)) from None
    if args.format == "json":
        print(json.dumps(report.as_json(), indent=2))
    else:
        print(report.summary())
    har_report(f"returns-mock validate-har {args.file}", report).write(**outputs)
    return 0 if report.ok else 1


def replay_drift(args: argparse.Namespace) -> int:
    from mockserver.contract.drift import text_report
    from mockserver.domain.seeding import ScenarioError
    from mockserver.proxy.shadow import replay
    from mockserver.verify.har import HarError, load
    from mockserver.verify.report import drift_report

    outputs = _outputs(args)
    seed = _json_file(args.seed_file, "--seed-file", SEED_LIMIT) if args.seed_file else None
    try:
        shadow = replay(load(Path(args.file), args.max_file_bytes), {p.name: p for p in REGISTRY},
                        dict(args.har_accounts), args.drift_ignore, seed, dict(args.provider_hosts), args.file)
    except HarError as exc:
        raise UsageError(str(exc)) from None
    except ScenarioError as exc:
        raise UsageError(f"--seed-file {args.seed_file}: {exc}") from None
    report = shadow.log.as_json()
    if args.format == "json":
        print(json.dumps(report, indent=2))
    else:
        print(text_report(args.file, report, "recorded", "replayed"))
    drift_report(f"returns-mock drift {args.file}", shadow.log, "recorded").write(**outputs)
    return 1 if report["summary"]["diverged"] else 0


def verify(args: argparse.Namespace) -> int:
    try:
        import schemathesis  # noqa: F401
    except ImportError:
        raise UsageError("returns-mock verify needs the verify extra (schemathesis): pip install "
                         "'/path/to/returns-mock[verify]' from a checkout, "
                         "or 'returns-mock[verify] @ <wheel or git URL>'") from None
    from mockserver.providers.provider import Credentials
    from mockserver.verify import Target, TargetError
    from mockserver.verify import verify as run

    provider = REGISTRY[args.provider]
    if not all(getattr(args, name) for name in provider.credentials):
        needed = " and ".join(f"--{name.replace('_', '-')}" for name in provider.credentials)
        raise UsageError(f"--provider {provider.name} needs {needed}")
    if args.drift_ignore and not args.compare_mock:
        raise UsageError("--drift-ignore: only with --compare-mock")
    outputs = _outputs(args)
    target = Target(args.provider, args.base_url,
                    Credentials(api_key=args.api_key, username=args.username, password=args.password))
    try:
        report = run(target, max_examples=args.max_examples, seed=args.seed, compare_mock=args.compare_mock,
                     drift_ignore=tuple(args.drift_ignore))
    except TargetError as exc:
        raise UsageError(str(exc)) from None
    print(report.summary())
    report.write(**outputs)
    return 0 if report.ok else 1


if __name__ == "__main__":
    sys.exit(main())
