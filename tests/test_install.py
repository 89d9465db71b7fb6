"""`pip install .` outside the checkout gives a working server: contracts come from the package."""

from __future__ import annotations

import json
import re
import shlex
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests
from helpers import ROOT, UP35, Server, fixture, free_port

from mockserver.version import __version__

pytestmark = pytest.mark.system


def test_the_built_wheel_serves_from_its_own_contracts(tmp_path: Path) -> None:
    wheels = tmp_path / "wheels"
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w",
                    str(wheels), str(ROOT)], check=True, timeout=300)
    (wheel,) = wheels.glob("returns_mock-*.whl")
    assert wheel.name.startswith(f"returns_mock-{__version__}-")  # the metadata's version is version.py's
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
    assert missing.returncode == 2 and "'/path/to/returns-mock[verify]' from a checkout" in missing.stderr



def _the_install_guide_counts_this_venv(venv: Path) -> None:
    """docs/install.md's count of packages in a fresh venv with the wheel alone is the count pip lists there,
    and its size is the venv's within a tenth (its files vary a little between pip versions)."""
    claim = re.search(r"(\d+) packages in a fresh venv, pip and setuptools included, (\d+) MB",
                      (ROOT / "docs" / "install.md").read_text())
    assert claim is not None, "docs/install.md no longer says how many packages a plain install brings"
    listed = subprocess.run([str(venv / "bin" / "python"), "-m", "pip", "list", "--format", "json"],
                            capture_output=True, text=True, check=True, timeout=120)
    names = {p["name"].lower() for p in json.loads(listed.stdout)}
    assert {"pip", "setuptools", "returns-mock"} <= names, names
    assert len(names) == int(claim.group(1)), sorted(names)
    size = sum(f.stat().st_size for f in venv.rglob("*") if f.is_file() and not f.is_symlink()) / 2**20
    assert abs(size - int(claim.group(2))) <= int(claim.group(2)) / 10, f"{size:.0f} MB"


def _the_pytest_examples_pass_with_the_install_line_beside_them(venv: Path, wheel: Path, tmp_path: Path) -> None:
    """The README's pytest example with the README's install line, then the client tests guide's three tests
    (requests, httpx, aiohttp) with the guide's: each in this venv, which held the runtime dependencies alone."""
    readme, guide = (ROOT / "README.md").read_text(), (ROOT / "docs" / "guides" / "client-tests.md").read_text()
    for text, section in ((readme, "Client tests in pytest: no server needed"),
                          (guide, "In your pytest suite: no server needed")):
        body = text.split(section, 1)[1]
        (line,) = set(re.findall(r"`(pip install '?/path/to/returns-mock[^`']*'? pytest)`", body.split("```", 1)[0]))
        command = shlex.split(line.replace("/path/to/returns-mock", str(wheel)))
        subprocess.run([str(venv / "bin" / "python"), "-m", *command[:2], "-q", *command[2:]], check=True,
                       timeout=600)
        (source,) = re.findall(r"```python\n(.*?)```", body, flags=re.S)[:1]
        (tmp_path / "examples").mkdir(exist_ok=True)
        (tmp_path / "examples" / "test_example.py").write_text(source)
        ran = subprocess.run([str(venv / "bin" / "python"), "-m", "pytest", "-q", "-p", "no:cacheprovider",
                              "--returns-mock-strict", "examples"], cwd=tmp_path, capture_output=True, text=True,
                             timeout=300)
        assert ran.returncode == 0, (line, ran.stdout[-3000:])


BAD_DATES = ["", "abc", "2026-02-30", "2026-13-01", "2026-01-05T25:00:00Z", "9999-99-99", "99999-01-01"]

RUNTIME_CHECKS = f"""
import json
from mockserver.domain.config import Config
from mockserver.web import create_app

client = create_app(Config()).test_client()
key = {{"Authorization": "Bearer zl_test_fresh"}}
statuses = {{}}
for value in {BAD_DATES!r}:
    for name in ("start_date", "end_date"):
        answer = client.get("/3plship/api/v1/returns", query_string={{name: value}}, headers=key)
        statuses[f"{{name}}={{value}}"] = [answer.status_code, answer.get_json()["error"]["details"].get("field")]
print(json.dumps(statuses))
"""


def test_runtime_dependencies_alone_check_the_contracts(tmp_path: Path) -> None:
    """A user's `pip install` gets the runtime dependencies only: in a fresh venv with no test extras, a
    bad date is still the provider's 422 naming the field (the date-time format check needs a package
    that the test extras used to bring in by chance)."""
    wheels = tmp_path / "wheels"
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w",
                    str(wheels), str(ROOT)], check=True, timeout=300)
    (wheel,) = wheels.glob("returns_mock-*.whl")
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    python = venv / "bin" / "python"
    subprocess.run([str(python), "-m", "pip", "install", "-q", str(wheel)], check=True, timeout=600)
    extras = subprocess.run([str(python), "-c", "import importlib.util as u; print([m for m in ('pytest', "
                             "'schemathesis', 'hypothesis') if u.find_spec(m)])"],
                            capture_output=True, text=True, check=True, timeout=60)
    assert extras.stdout.strip() == "[]"  # really the runtime dependencies alone
    _the_install_guide_counts_this_venv(venv)
    ran = subprocess.run([str(python), "-c", RUNTIME_CHECKS], capture_output=True, text=True, timeout=120,
                         cwd=tmp_path)
    assert ran.returncode == 0, ran.stderr
    statuses = json.loads(ran.stdout)
    assert statuses == {key: [422, key.split("=")[0]] for key in statuses}, statuses
    assert len(statuses) == 2 * len(BAD_DATES)
    # And the server as a user starts it, from that venv alone: granian's RSGI side and its event loop.
    port = free_port()
    server = subprocess.Popen([str(venv / "bin" / "returns-mock"), "serve", "--store", "memory", "--port", str(port),
                               "--vary", "3"], cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                answer = requests.get(f"http://127.0.0.1:{port}/3plship/api/v1/returns?start_date=2026-02-30",
                                      headers={"Authorization": "Bearer zl_test_fresh"}, timeout=15)
                break
            except requests.ConnectionError:
                assert server.poll() is None and time.monotonic() < deadline, server.communicate()[0]
                time.sleep(0.2)
        assert answer.status_code in (422, 429, 500, 503)  # varied: a documented error may come instead
        if answer.status_code == 422:
            assert answer.json()["error"]["details"]["field"] == "start_date"
        # Varied answers (serve --vary) need no extra either: some of 30 creates come back varied. A varied
        # answer may take up to the documented 5 s (info.x-latency): wait longer than that.
        for n in range(30):
            requests.post(f"http://127.0.0.1:{port}/3plship/api/v1/returns", timeout=15,
                          headers={"Authorization": "Bearer zl_test_fresh"},
                          json={"order_id": f"o{n}", "reason": "defective", "items": [{"sku": "P", "quantity": 1}],
                                "refund_amount": 10})
        journal = requests.get(f"http://127.0.0.1:{port}/__admin/journal", timeout=5).json()["entries"]
        assert any(v.startswith("/data/") for e in journal for v in e["varied"]), journal[-1]
        # The proxy (its pipeline, upstream client, recording and shadow) from that venv alone, in front of it:
        # it waits longer than the varied upstream's 5 s ceiling (its own default, 5 s, would answer 504).
        front_port = free_port()
        front = subprocess.Popen([str(venv / "bin" / "returns-mock"), "proxy", "--port", str(front_port),
                                  "--3plship-upstream", f"http://127.0.0.1:{port}/3plship/api/v1", "--shadow",
                                  "--upstream-timeout-ms", "12000", "--record", "traffic.har"], cwd=tmp_path,
                                 stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        try:
            deadline = time.monotonic() + 30
            while True:
                try:
                    through = requests.get(f"http://127.0.0.1:{front_port}/3plship/api/v1/returns", timeout=15,
                                           headers={"Authorization": "Bearer zl_test_fresh"})
                    break
                except requests.ConnectionError:
                    assert front.poll() is None and time.monotonic() < deadline, front.communicate()[0]
                    time.sleep(0.2)
            assert through.status_code in (200, 429, 500, 503) and "success" in through.json()
            entries = requests.get(f"http://127.0.0.1:{front_port}/__admin/journal", timeout=5).json()["entries"]
            assert [(e["path"], e["status"]) for e in entries] == [("/3plship/api/v1/returns", through.status_code)]
            assert requests.get(f"http://127.0.0.1:{front_port}/__admin/drift", timeout=5).status_code == 200
            assert json.loads((tmp_path / "traffic.har").read_text())["log"]["entries"][0]["response"]["status"] \
                == through.status_code
        finally:
            front.terminate()
            front.wait(timeout=15)
    finally:
        server.terminate()
        server.wait(timeout=15)
    _the_pytest_examples_pass_with_the_install_line_beside_them(venv, wheel, tmp_path)
    # And the shadow's offline form, `returns-mock drift`, from that venv alone, on the proxy's recording (the
    # upstream varies its answers: drift or none, both are a report).
    drift = subprocess.run([str(venv / "bin" / "returns-mock"), "drift", "traffic.har"], cwd=tmp_path,
                           capture_output=True, text=True, timeout=120)
    assert drift.returncode in (0, 1) and "traffic.har: 1 exchange(s) replayed, " in drift.stdout, drift.stderr
