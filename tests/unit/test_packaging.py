"""The product wheel is the product: the ``ksha`` package and its metadata, never the lab, the
stand-ins or test code (those are the ``ksha-lab`` distribution in lab/ and the tests), and nothing
in ``ksha`` imports them."""

import ast
import shutil
import subprocess
import sys
import zipfile
from pathlib import PurePosixPath

import pytest

import ksha
from tests.conftest import REPO

# Top-level packages the product may never import: the lab's distribution and the test suite.
NOT_PRODUCT = {"ksha_lab", "tests"}
# Path parts that mark lab, stand-in, test or benchmark code.
NOT_PRODUCT_PARTS = {"lab", "ksha_lab", "standins", "tests", "bench"}
DIST_INFO = f"ksha-{ksha.__version__}.dist-info/"


@pytest.fixture(scope="module")
def wheel(tmp_path_factory):
    """The product wheel, built as a user would (pip wheel .) from a copy of the checkout, lab/ and
    tests/ included, so setuptools' build/ and egg-info do not land in the checkout."""
    src = tmp_path_factory.mktemp("checkout") / "ksha"
    shutil.copytree(
        REPO,
        src,
        ignore=shutil.ignore_patterns(".git", ".venv", "build", "*.egg-info", "__pycache__", ".*_cache", ".lab"),
    )
    out = tmp_path_factory.mktemp("wheel")
    run = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "-w", str(out), str(src)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode == 0, run.stdout + run.stderr
    [built] = out.glob("ksha-*.whl")
    with zipfile.ZipFile(built) as zf:
        return {name: zf.read(name) for name in zf.namelist() if not name.endswith("/")}


def forbidden_imports(source, filename):
    """Imports in `source` of a package in NOT_PRODUCT: `import x`, `from x import y`,
    importlib.import_module("x…") and __import__("x…")."""
    found = []
    for node in ast.walk(ast.parse(source, filename)):
        names = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module]
        elif isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant):
            func = node.func
            called = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", None)
            if called in ("import_module", "__import__") and isinstance(node.args[0].value, str):
                names = [node.args[0].value]
        found += [(node.lineno, name) for name in names if name.split(".")[0] in NOT_PRODUCT]
    return [f"{filename}:{line}: {name}" for line, name in sorted(found)]


def test_the_wheel_holds_the_ksha_package_and_its_metadata_only(wheel):
    assert {"ksha/__init__.py", "ksha/cli.py", "ksha/inventory.py", "ksha/importer.py"} <= set(wheel)
    assert [n for n in wheel if not n.startswith(("ksha/", DIST_INFO))] == []
    assert wheel[DIST_INFO + "top_level.txt"].decode().split() == ["ksha"]
    # One console script, the product's: `ksha-lab` comes with the lab's own distribution.
    scripts = wheel[DIST_INFO + "entry_points.txt"].decode()
    assert "ksha = ksha.cli:main" in scripts and "ksha_lab" not in scripts and "ksha-lab" not in scripts


def test_the_wheel_carries_the_formulas_defaults(wheel, tmp_path):
    """The validator and the model read salt/ksha's defaults and os_family values; an installed
    wheel has no checkout beside it, so it holds them, byte for byte, and builds the model."""
    for name in ("defaults.yaml", "osfamilymap.yaml"):
        assert wheel[f"ksha/formula/{name}"] == (REPO / "salt" / "ksha" / name).read_bytes()
    for name, data in wheel.items():
        if name.startswith("ksha/"):
            (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
            (tmp_path / name).write_bytes(data)
    example = REPO / "pillar" / "ksha.sls.example"
    probe = (
        "import sys, yaml; sys.path.insert(0, sys.argv[1]); from ksha import model; "
        "m = model.build(yaml.safe_load(open(sys.argv[2]))['ksha'], 'Debian'); "
        "assert model.__file__.startswith(sys.argv[1]), model.__file__; "
        "print(m['etcd']['client_urls']['master1'], m['config']['common']['pkgs'][0])"
    )
    run = subprocess.run([sys.executable, "-c", probe, str(tmp_path), str(example)], capture_output=True, text=True,
                         cwd=tmp_path)  # fmt: skip
    assert run.returncode == 0, run.stderr
    assert run.stdout.split() == ["https://192.168.0.1:2379", "ca-certificates"]


def test_no_lab_stand_in_or_test_code_is_in_the_wheel(wheel):
    assert [n for n in wheel if NOT_PRODUCT_PARTS & set(PurePosixPath(n).parts)] == []
    # Stand-ins say what they are (STAND-IN): none may be shipped, whatever its file is called.
    assert [n for n, data in wheel.items() if b"STAND-IN" in data] == []
    # No lab module copied into the product under another name.
    lab_sources = {p.read_bytes() for p in (REPO / "lab" / "ksha_lab").rglob("*.py") if p.stat().st_size > 0}
    assert [n for n, data in wheel.items() if data in lab_sources] == []


def test_nothing_in_the_wheel_imports_the_lab_or_the_tests(wheel):
    found = []
    for name, data in wheel.items():
        if name.endswith(".py"):
            found += forbidden_imports(data.decode(), name)
    assert found == []


def test_nothing_under_ksha_in_the_checkout_imports_the_lab_or_the_tests():
    """The same for the source tree, where a module not (yet) in the wheel may be."""
    modules = sorted((REPO / "ksha").rglob("*.py"))
    assert REPO / "ksha" / "cli.py" in modules
    found = []
    for path in modules:
        found += forbidden_imports(path.read_text(), str(path.relative_to(REPO)))
    assert found == []
    assert not (REPO / "ksha" / "lab").exists(), "the lab is the ksha-lab distribution (lab/ksha_lab)"


def test_the_import_scan_sees_every_kind_of_import():
    source = (
        "import tests.conftest\nfrom ksha_lab import core\nimport importlib\n"
        "importlib.import_module('ksha_lab.cli')\n__import__('tests')\nfrom ksha import cli\nimport testsuite\n"
    )
    assert forbidden_imports(source, "m.py") == [
        "m.py:1: tests.conftest",
        "m.py:2: ksha_lab",
        "m.py:4: ksha_lab.cli",
        "m.py:5: tests",
    ]
