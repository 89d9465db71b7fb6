"""Typed clients generated from the served OpenAPI documents (openapi-python-client) work against the server.

This is what the client tests guide's "Generate a typed client" section (docs/guides/client-tests.md) tells users
to do.
"""

from __future__ import annotations

import importlib
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from helpers import doc_blocks, fixture

from mockserver.live import LiveMock

pytestmark = pytest.mark.system

GENERATOR = Path(sys.executable).parent / "openapi-python-client"


def generate(tmp_path: Path, provider: str, package: str) -> None:
    document = tmp_path / f"{provider}.json"
    result = subprocess.run([sys.executable, "-m", "mockserver.cli", "openapi", provider], capture_output=True,
                            text=True, check=True, timeout=60)
    document.write_text(result.stdout)
    config = tmp_path / f"{package}.yaml"
    config.write_text(f"project_name_override: {package.replace('_', '-')}\npackage_name_override: {package}\n")
    generated = subprocess.run([str(GENERATOR), "generate", "--path", str(document), "--config", str(config),
                                "--meta", "none", "--overwrite"], capture_output=True, text=True, cwd=tmp_path,
                               timeout=120)
    assert (tmp_path / package / "client.py").is_file(), generated.stdout + generated.stderr
    assert "Unable to process" not in generated.stdout and "Cannot parse" not in generated.stdout, generated.stdout


def importable(tmp_path: Path, packages: dict[str, str]) -> Iterator[Path]:
    """Generate each document's client package (document: package) and make them importable for one test."""
    for document, package in packages.items():
        generate(tmp_path, document, package)
    sys.path.insert(0, str(tmp_path))
    try:
        yield tmp_path
    finally:
        sys.path.remove(str(tmp_path))
        for name in [m for m in sys.modules if m.split(".")[0] in packages.values()]:
            del sys.modules[name]


@pytest.fixture
def clients(tmp_path: Path) -> Iterator[Path]:
    yield from importable(tmp_path, {"3plship": "threeplship_client", "35up": "up35_client"})


def module(name: str) -> Any:
    return importlib.import_module(name)


def test_generated_clients_create_list_refund_and_update(clients: Path) -> None:
    client_3pl = module("threeplship_client")
    models_3pl = module("threeplship_client.models")
    create, listing, status, refund = (module(f"threeplship_client.api.returns.{name}") for name in (
        "create_return", "list_returns", "update_return_status", "process_refund"))
    with LiveMock() as server:
        client = client_3pl.AuthenticatedClient(base_url=server.base_urls["3plship"], token="zl_test_generated")
        body = models_3pl.ReturnCreateRequest.from_dict(fixture("3plship/create-return.request.json"))
        created = create.sync_detailed(client=client, body=body)
        assert created.status_code == 201
        rid = created.parsed.data.id
        page = listing.sync(client=client, limit=5)
        assert [r.id for r in page.data] == [rid] and page.meta.pagination.total == 1  # typed pagination
        for step in ("received", "inspected"):
            moved = status.sync(rid, client=client, body=models_3pl.ReturnStatusUpdateRequest.from_dict(
                {"status": step}))
            assert moved.data.status.value == step
        refunded = refund.sync_detailed(rid, client=client)
        assert refunded.status_code == 200 and refunded.parsed.data.refund_status.value == "processing"
        again = refund.sync_detailed(rid, client=client)
        assert again.status_code == 409 and again.parsed.error.code == "REFUND_ALREADY_PROCESSED"  # errors parse

        client_35 = module("up35_client")
        models_35 = module("up35_client.models")
        create_35, update_35 = (module(f"up35_client.api.returns.{name}") for name in ("create_return",
                                                                                       "update_return"))
        basic = client_35.Client(base_url=server.base_urls["35up"],
                                 headers={"Authorization": "Basic c2hvcDpwdw=="})  # shop:pw
        made = create_35.sync_detailed(client=basic, body=models_35.ReturnCreateRequest.from_dict(
            fixture("35up/create-return.request.json")))
        assert made.status_code == 201
        moved_35 = update_35.sync(made.parsed.order_id, client=basic,
                                  body=models_35.ReturnUpdateRequest.from_dict({"status": "awaiting_return"}))
        assert moved_35.status.value == "awaiting_return"


def test_the_readme_example_runs(clients: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (source,) = doc_blocks("Generate a typed client", "python")
    with LiveMock() as server:
        exec(compile(source.replace("http://127.0.0.1:8080/3plship/api/v1", server.base_urls["3plship"]),
                     "client-tests.md", "exec"), {})
    printed = capsys.readouterr().out.split()
    assert printed[0].startswith("ret_") and printed[1] == "1"


@pytest.fixture
def admin_client(tmp_path: Path) -> Iterator[Path]:
    yield from importable(tmp_path, {"admin": "admin_client"})


def test_a_client_generated_from_the_control_planes_document_drives_the_mock(admin_client: Path) -> None:
    """/__admin/openapi.json as WireMock's users use WireMock's: a typed client generated from it resets,
    seeds, moves the clock, adds a fault and reads the journal, and its errors parse."""
    admin = module("admin_client")
    models = module("admin_client.models")
    reset, seed, get_return = (module(f"admin_client.api.returns.{n}") for n in ("reset", "seed", "get_return"))
    move_clock = module("admin_client.api.clock.move_clock")
    add_faults, list_faults = (module(f"admin_client.api.faults.{n}") for n in ("add_faults", "list_faults"))
    get_journal = module("admin_client.api.journal.get_journal")
    with LiveMock() as server:
        client = admin.Client(base_url=server.url + "/__admin")
        seeded = seed.sync(client=client, body=models.Scenario.from_dict(fixture("scenarios/example.json")))
        assert seeded.seeded == len(fixture("scenarios/example.json")["returns"])
        moved = move_clock.sync(client=client, body=models.ClockRequest.from_dict({"advance": "P31D"}))
        assert moved.mode.value in ("real", "frozen") and moved.now.year >= 2026  # typed: a datetime
        expired = get_return.sync("35up", "1002", client=client, account="shop-a")
        assert expired.status == "expired"  # the 35up return window passed on the mock's clock
        refused = move_clock.sync_detailed(client=client, body=models.ClockRequest.from_dict({"advance": "P1Y"}))
        assert refused.status_code == 422 and refused.parsed.error.code == "validation_error"
        # A fault rule is one of three shapes (a status, a latency, a dropped connection): a union of models.
        added = add_faults.sync(client=client, body=models.FaultRuleType0.from_dict(
            {"provider": "3plship", "status": 503, "times": 1}))
        assert [r.id for r in added.rules] == [r.id for r in list_faults.sync(client=client).rules]
        import requests

        failed = requests.get(server.base_urls["3plship"] + "/returns", timeout=10,
                              headers={"Authorization": "Bearer zl_test_admin"})
        assert failed.status_code == 503
        journal = get_journal.sync(client=client, limit=1)
        assert [(e.status, e.fault) for e in journal.entries] == [(503, f"status 503 ({added.rules[0].id})")]
        cleared = reset.sync(client=client)
        assert cleared.removed == seeded.seeded and cleared.provider is None
        assert get_journal.sync(client=client).entries == []  # a full reset clears the journal
