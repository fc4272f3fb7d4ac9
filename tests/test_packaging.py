"""The installed package carries everything a report needs: a wheel installed into a new
environment runs ``mfr-analysis report`` from outside the repository, with no environment
variable but the pseudonym key, and never opens a file of the repository.

The new environment reuses this one's dependencies (a ``.pth`` file naming its
site-packages: their own ``.pth`` files, such as the editable install's finder, are not run;
and nbconvert's templates), so the test needs no download; an audit hook in it records every
file opened inside the repository, by the command and by the notebooks' kernel alike.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
import tomllib
import zipfile
from pathlib import Path

import pytest

from tests.conftest import REPO, TEST_KEY

AUDIT_HOOK = '''"""Records files opened in MFR_AUDIT_REPO (not MFR_AUDIT_ALLOW) in MFR_AUDIT_LOG."""
import os
import sys

_REPO, _ALLOW = os.environ.get("MFR_AUDIT_REPO"), os.environ.get("MFR_AUDIT_ALLOW")
if _REPO and os.environ.get("MFR_AUDIT_LOG"):
    _LOG = os.open(os.environ["MFR_AUDIT_LOG"], os.O_WRONLY | os.O_APPEND | os.O_CREAT)
    _BUSY = []

    def _audit(event, args):
        if event != "open" or _BUSY or not args or isinstance(args[0], int) or args[0] is None:
            return
        _BUSY.append(1)
        try:
            path = os.path.abspath(os.fsdecode(args[0]))
            inside = path == _REPO or path.startswith(_REPO + os.sep)
            if inside and not (_ALLOW and path.startswith(_ALLOW + os.sep)):
                os.write(_LOG, (path + "\\n").encode())
        except Exception:
            pass
        finally:
            _BUSY.clear()

    sys.addaudithook(_audit)
'''


def listed_packages() -> list[str]:
    config = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))
    return config["tool"]["setuptools"]["packages"]


def test_every_subpackage_is_listed_and_the_notebooks_are_one_of_them() -> None:
    """pyproject.toml lists the packages (one of them maps notebooks/reports/, which cannot be
    discovered): a folder of code or data left out of the list would miss from the wheel."""
    source = REPO / "src"
    found = {".".join(file.parent.relative_to(source).parts)
             for file in source.glob("mfr_analysis/**/*")
             if file.is_file() and "__pycache__" not in file.parts}
    listed = set(listed_packages())
    assert found - listed == set(), "add these to [tool.setuptools] packages in pyproject.toml"
    assert "mfr_analysis.report_notebooks" in listed
    assert (REPO / "notebooks" / "reports" / "__init__.py").is_file()


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The wheel built from a copy of the files a build reads (the repository is untouched)."""
    tree = tmp_path_factory.mktemp("tree")
    ignore = shutil.ignore_patterns("__pycache__", "*.egg-info", ".ipynb_checkpoints")
    shutil.copytree(REPO / "src", tree / "src", ignore=ignore)
    shutil.copytree(REPO / "notebooks", tree / "notebooks", ignore=ignore)
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(REPO / name, tree / name)
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run([sys.executable, "-m", "pip", "wheel", str(tree), "--no-deps", "-q",
                    "-w", str(out)], check=True, capture_output=True, timeout=600)
    [built] = out.glob("mfr_analysis-*.whl")
    return built


def test_the_wheel_carries_the_notebooks_templates_and_tables(wheel: Path) -> None:
    names = set(zipfile.ZipFile(wheel).namelist())
    for notebook in ("claims_report.ipynb", "data_quality.ipynb"):
        assert f"mfr_analysis/report_notebooks/{notebook}" in names
    assert "mfr_analysis/templates/index.html.j2" in names
    assert "mfr_analysis/templates/mfr_offline/index.html.j2" in names
    tables = {p.relative_to(REPO / "src").as_posix()
              for p in (REPO / "src" / "mfr_analysis" / "data").rglob("*.csv")}
    assert tables and tables <= names
    assert not any(name.startswith("notebooks/") or "explore" in name for name in names)


def test_an_installed_wheel_runs_a_report_outside_the_repository(
        wheel: Path, tmp_path: Path) -> None:
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True,
                   timeout=300)
    python = venv / "bin" / "python"
    site = Path(subprocess.run(
        [python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        check=True, capture_output=True, text=True).stdout.strip())
    (site / "dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    shared = venv / "share" / "jupyter"  # the dependencies' data files: nbconvert's templates
    shared.mkdir(parents=True)
    (shared / "nbconvert").symlink_to(Path(sys.prefix) / "share" / "jupyter" / "nbconvert")
    (site / "_mfr_audit.py").write_text(AUDIT_HOOK)
    (site / "mfr_audit.pth").write_text("import _mfr_audit\n")
    subprocess.run([python, "-m", "pip", "install", "--no-deps", "--no-index", "-q",
                    str(wheel)], check=True, capture_output=True, timeout=600)

    sample = tmp_path / "sample"
    shutil.copytree(REPO / "data" / "sample" / "logs", sample)
    audit = tmp_path / "opened-in-repo.txt"
    env = {"PATH": f"{venv / 'bin'}:/usr/bin:/bin", "HOME": str(tmp_path / "home"),
           "MFR_PSEUDONYM_KEY": TEST_KEY, "JUPYTER_DATA_DIR": str(tmp_path / "jupyter"),
           "MFR_AUDIT_REPO": str(REPO.resolve()), "MFR_AUDIT_ALLOW": str(Path(sys.prefix)),
           "MFR_AUDIT_LOG": str(audit)}
    where = subprocess.run(
        [python, "-c", "import mfr_analysis.report_notebooks as n, mfr_analysis.report.run as r;"
                       "print(n.__file__); print(r.notebook_dir())"],
        cwd=tmp_path, env=env, check=True, capture_output=True, text=True).stdout.split()
    assert all(Path(p).is_relative_to(venv) for p in where), where

    run = subprocess.run([venv / "bin" / "mfr-analysis", "report", "sample", "--out", "r"],
                         cwd=tmp_path, env=env, capture_output=True, text=True, timeout=1200,
                         check=False)
    assert run.returncode == 0, run.stderr[-3000:]
    for page in ("index.html", "data-quality.html", "claims-all.html"):
        assert (tmp_path / "r" / page).is_file(), page
    assert "mfr-analysis: error" not in run.stderr
    kernel = venv / "share" / "jupyter" / "kernels" / "mfr-analysis" / "kernel.json"
    assert kernel.is_file()  # the notebooks ran on this environment's own kernel
    opened = audit.read_text().split() if audit.exists() else []
    assert opened == [], f"files of the repository were opened: {sorted(set(opened))[:5]}"
    assert not os.environ.get("MFR_NOTEBOOK_DIR")  # and no override was at work
