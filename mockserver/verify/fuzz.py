"""Schemathesis over the contract, against a target URL (its engine: the phases and checks of its CLI)."""

from __future__ import annotations

from typing import Any

import schemathesis
from schemathesis.config import SchemathesisConfig
from schemathesis.engine import Status, events, from_schema

from mockserver.verify.report import Failure, Report


def run_contract_suite(document: dict[str, Any], base_url: str, headers: dict[str, str], report: Report, *,
                       max_examples: int, seed: int | None) -> None:
    settings: dict[str, Any] = {"base-url": base_url, "headers": headers,
                                "generation": {"max-examples": max_examples}}
    if seed is not None:
        settings["seed"] = seed
    # Never fuzz webhook subscriptions: against a real account the provider would then deliver return data
    # to generated URLs. The scenario pl_webhook_subscription checks that operation with an inactive
    # loopback subscription instead.
    schema = schemathesis.openapi.from_dict(document, config=SchemathesisConfig.from_dict(settings)) \
        .exclude(operation_id="createWebhook")
    for event in from_schema(schema).execute():
        if isinstance(event, events.ScenarioFinished):
            _collect(event, report)
        elif isinstance(event, events.NonFatalError):
            report.add(Failure("contract", event.label, "error", str(event.value)))
        elif isinstance(event, events.FatalError):
            report.add(Failure("contract", "schemathesis", "fatal_error", str(event.exception)))


def _collect(event: events.ScenarioFinished, report: Report) -> None:
    recorder = event.recorder
    label = recorder.label
    checks = [check for nodes in recorder.checks.values() for check in nodes]
    report.ran("contract", label, max(1, len(checks)))
    for check in checks:
        if check.status != Status.FAILURE or check.failure_info is None:
            continue
        failure = check.failure_info.failure
        message = failure.title + (f": {failure.message}" if failure.message else "")
        report.add(Failure("contract", label, check.name, " ".join(message.split())[:500],
                             check.failure_info.code_sample))
