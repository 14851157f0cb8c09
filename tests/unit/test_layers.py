"""The architecture's rules, checked as `make lint` checks them: the import contracts in pyproject.toml
hold for the code as it is, and a wrong import in a copy of the code fails them with a message naming
it. Also the size rules issue 17 set: few top-level modules in basic/, none over 400 lines."""
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
LINT_IMPORTS = Path(sys.executable).parent / "lint-imports"
pytestmark = pytest.mark.skipif(not LINT_IMPORTS.exists(), reason="import-linter is not installed (make setup)")


def lint_imports(where: Path) -> subprocess.CompletedProcess:
    return subprocess.run([str(LINT_IMPORTS), "--no-cache"], cwd=where, capture_output=True, text=True, timeout=120)


@pytest.fixture
def copy_of_the_code(tmp_path: Path) -> Path:
    for name in ("basic", "app"):
        shutil.copytree(ROOT / name, tmp_path / name, ignore=shutil.ignore_patterns("__pycache__", "static"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path)
    return tmp_path


def add_import(root: Path, module: str, line: str) -> None:
    path = root / (module.replace(".", "/") + ".py")
    if not path.exists():
        path = root / module.replace(".", "/") / "__init__.py"
    path.write_text(path.read_text() + f"\n{line}  # noqa\n")


def test_the_code_keeps_every_contract():
    done = lint_imports(ROOT)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "0 broken" in done.stdout


@pytest.mark.parametrize(("module", "line", "named"), [
    # a lower layer importing a higher one
    ("basic.core.keys", "from basic.api import errors", "basic.core.keys -> basic.api.errors"),
    ("basic.jobs.services", "from basic.realtime import chat", "basic.jobs.services -> basic.realtime.chat"),
    # transports never import each other
    ("basic.api.views", "from basic.ops import health", "basic.api.views -> basic.ops.health"),
    ("basic.realtime.limits", "from basic.api import errors", "basic.realtime.limits -> basic.api.errors"),
    # a kind may use only what basic.jobs offers kinds
    ("basic.kinds.thumbnails", "from basic.jobs import services", "basic.kinds.thumbnails -> basic.jobs.services"),
    # the terminal client needs no server and no Django
    ("basic.cli.api", "import django", "basic.cli.api -> django"),
    ("basic.cli.api", "from basic.jobs import events", "basic.cli.api -> basic.jobs.events"),
])
def test_a_wrong_import_fails_the_contracts_naming_it(copy_of_the_code, module, line, named):
    add_import(copy_of_the_code, module, line)
    done = lint_imports(copy_of_the_code)
    assert done.returncode != 0
    assert named in done.stdout, done.stdout


def test_an_import_circle_fails_even_under_type_checking(copy_of_the_code):
    """The circle issue 17 found (models -> registry -> context -> transitions -> models) was made of
    a TYPE_CHECKING import; grimp sees those, so the contracts refuse it."""
    add_import(copy_of_the_code, "basic.jobs.registry",
               "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from basic.jobs.context import JobContext")
    done = lint_imports(copy_of_the_code)
    assert done.returncode != 0
    assert "registry -> .context" in done.stdout or "basic.jobs.registry -> basic.jobs.context" in done.stdout, \
        done.stdout


def test_basic_has_few_top_level_modules_and_none_is_long():
    top_level = sorted(path.name for path in (ROOT / "basic").glob("*.py"))
    assert len(top_level) <= 12, top_level
    long = {str(path.relative_to(ROOT)): n for path in (ROOT / "basic").rglob("*.py")
            if "migrations" not in path.parts and (n := len(path.read_text().splitlines())) > 400}
    assert not long, long


def test_kind_modules_written_against_the_old_paths_still_load():
    """`basic.lifecycle.registry` and `.context` are thin aliases for one release (JOB_KIND_MODULES users):
    the very same objects as in basic.jobs, with a DeprecationWarning that names the new home."""
    code = (
        "import warnings; warnings.simplefilter('error', DeprecationWarning)\n"
        "import django; django.setup()\n"
        "try:\n"
        "    from basic.lifecycle.registry import JobKind\n"
        "except DeprecationWarning as warning:\n"
        "    print('warned:', warning)\n"
        "warnings.simplefilter('ignore', DeprecationWarning)\n"
        "from basic.lifecycle.context import JobContext, JobFailed\n"
        "from basic.lifecycle.registry import JobKind, register\n"
        "from basic.jobs import context, registry\n"
        "assert (JobKind, register, JobContext, JobFailed) == "
        "(registry.JobKind, registry.register, context.JobContext, context.JobFailed)\n"
        "print('same objects')\n"
    )
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "app.settings", "LISTEN_LOOPBACK_ONLY": "1",
           "DATABASE_URL": "sqlite:///:memory:"}
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "warned: basic.lifecycle.registry is now basic.jobs.registry" in done.stdout
    assert "same objects" in done.stdout


def test_the_kinds_contract_names_every_module_of_jobs_but_kind_api():
    """A module added to basic/jobs/ is closed to kinds from the start: the contract's list is complete."""
    import tomllib

    contracts = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]["contracts"]
    (kinds,) = [c for c in contracts if c.get("source_modules") == ["basic.kinds"]]
    modules = {f"basic.jobs.{path.stem}" for path in (ROOT / "basic" / "jobs").glob("*.py")}
    assert set(kinds["forbidden_modules"]) == modules - {"basic.jobs.__init__", "basic.jobs.kind_api"}
