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


@pytest.fixture
def clients(tmp_path: Path) -> Iterator[Path]:
    generate(tmp_path, "3plship", "threeplship_client")
    generate(tmp_path, "35up", "up35_client")
    sys.path.insert(0, str(tmp_path))
    try:
        yield tmp_path
    finally:
        sys.path.remove(str(tmp_path))
        for name in [m for m in sys.modules if m.split(".")[0] in ("threeplship_client", "up35_client")]:
            del sys.modules[name]


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
