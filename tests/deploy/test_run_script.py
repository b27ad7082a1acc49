"""``scripts/run.sh`` installs once and then only when something it installs from changed
(issue 13, item 4): run it twice on a copy of the repo, with pip taken out of the venv
between the runs, so a second install would fail instead of being timed."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.helpers.exporter import REPO

COPIED = ("pyproject.toml", "README.md", "LICENSE", "exporter", "scripts/bootstrap.sh",
          "scripts/run.sh")


def sh(repo: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("STACKMON_", "VIRTUAL_ENV", "PYTHON"))}
    return subprocess.run(["bash", *args], cwd=repo, capture_output=True, text=True,
                          timeout=600, env=env, check=False)


@pytest.fixture
def repo_copy(tmp_path: Path) -> Path:
    for name in COPIED:
        src, dst = REPO / name, tmp_path / name
        dst.parent.mkdir(parents=True, exist_ok=True)
        if src.is_dir():
            shutil.copytree(src, dst, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy(src, dst)
    return tmp_path


def test_run_sh_installs_only_when_pyproject_changes(repo_copy: Path) -> None:
    first = sh(repo_copy, "scripts/run.sh", "--version")
    assert (first.returncode, first.stdout.strip()) == (0, "stackmon 0.1.0"), first.stderr
    python = repo_copy / ".venv" / "bin" / "python"
    subprocess.run([str(python), "-m", "pip", "uninstall", "-q", "-y", "pip"], check=True,
                   capture_output=True, timeout=120)

    again = sh(repo_copy, "scripts/run.sh", "--version")
    assert (again.returncode, again.stdout.strip()) == (0, "stackmon 0.1.0"), \
        f"run.sh tried to install again: {again.stderr[-2000:]}"

    pyproject = repo_copy / "pyproject.toml"
    pyproject.write_text(pyproject.read_text() + "\n# a changed dependency list\n")
    changed = sh(repo_copy, "scripts/bootstrap.sh")
    assert changed.returncode != 0 and "No module named pip" in changed.stderr, \
        "a changed pyproject.toml must lead to pip install"
