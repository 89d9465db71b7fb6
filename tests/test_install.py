"""`pip install .` outside the checkout gives a working server: contracts come from the package."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import requests
from helpers import ROOT, UP35, Server, fixture

pytestmark = pytest.mark.system


def test_the_built_wheel_serves_from_its_own_contracts(tmp_path: Path) -> None:
    wheels = tmp_path / "wheels"
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w",
                    str(wheels), str(ROOT)], check=True, timeout=300)
    (wheel,) = wheels.glob("returns_mock-*.whl")
    site = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", str(site),
                    str(wheel)], check=True, timeout=300)
    installed = site / "mockserver"
    assert (installed / "contracts" / "35up" / "openapi.json").is_file()
    assert not (installed / "contracts").is_symlink()
    assert (installed / "fixtures" / "manifest.json").is_file()

    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = {"PYTHONPATH": str(site)}
    where = subprocess.run([sys.executable, "-c", "import mockserver; print(mockserver.__file__)"],
                           cwd=elsewhere, env=env, capture_output=True, text=True, check=True)
    assert where.stdout.startswith(str(installed))

    server = Server("--store", f"sqlite:{tmp_path / 'state.db'}", cwd=elsewhere, env=env).start()
    try:
        response = requests.post(server.url + UP35 + "/returns", json=fixture("35up/create-return.request.json"),
                                 auth=("shop", "pw"), timeout=10)
        assert response.status_code == 201
        assert requests.get(server.url + "/35up/openapi.json", timeout=10).json()["openapi"] == "3.1.0"
    finally:
        server.stop()


def test_the_plugin_loads_none_of_the_machinery_and_verify_is_an_extra(tmp_path: Path) -> None:
    """Installing returns-mock must not slow down every pytest run: loading the plugin imports no web
    framework, validator or HTTP mocking library, and schemathesis (with hypothesis and their own pytest
    plugins) comes only with the verify extra."""
    code = ("import sys, mockserver.pytest_plugin\n"
            "print(sorted({m.split('.')[0] for m in sys.modules} & {'flask', 'werkzeug', 'jsonschema', 'schemathesis',"
            " 'hypothesis', 'responses', 'requests', 'respx', 'aiohttp', 'httpx', 'granian'}))")
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60)
    assert loaded.stdout.strip() == "[]"
    metadata = subprocess.run([sys.executable, "-c", "import importlib.metadata as m; "
                               "print('\\n'.join(m.requires('returns-mock') or []))"],
                              capture_output=True, text=True, check=True, timeout=60).stdout.splitlines()
    schemathesis = [line for line in metadata if line.startswith("schemathesis")]
    assert schemathesis and all("extra ==" in line for line in schemathesis), metadata  # never unconditional
    assert any("'verify'" in line or '"verify"' in line for line in schemathesis)
    missing = subprocess.run([sys.executable, "-c", "import sys; sys.modules['schemathesis'] = None\n"
                              "from mockserver.cli import main; sys.exit(main(sys.argv[1:]))", "verify", "--provider",
                              "3plship", "--base-url", "http://127.0.0.1:9/x", "--api-key", "zl_test_x"],
                             capture_output=True, text=True, timeout=60)
    assert missing.returncode == 2 and "pip install 'returns-mock[verify]'" in missing.stderr

