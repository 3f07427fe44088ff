"""requirements.lock against pyproject.toml: a package in one and not the other is named by `make lint`."""

from __future__ import annotations

import importlib.util
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
_spec = importlib.util.spec_from_file_location("deps", ROOT / "tools" / "deps.py")
deps = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(deps)


@pytest.fixture()
def copies(tmp_path: Path) -> tuple[Path, Path]:
    pyproject, lock = tmp_path / "pyproject.toml", tmp_path / "requirements.lock"
    shutil.copy(deps.PYPROJECT, pyproject)
    shutil.copy(deps.LOCK, lock)
    return pyproject, lock


def test_lock_matches_pyproject_and_this_environment() -> None:
    assert deps.problems() == []
    blocks = deps.lock_blocks(deps.LOCK.read_text())
    # Every entry is an exact version with at least one hash, the build tools included.
    assert {"pyspark", "dagster", "setuptools", "wheel"} <= blocks.keys()
    for name, (version, block) in blocks.items():
        assert re.fullmatch(r"[0-9][0-9A-Za-z.+!-]*", version), name
        assert "--hash=sha256:" in block, name


def test_a_package_removed_from_the_lock_is_named(copies: tuple[Path, Path]) -> None:
    pyproject, lock = copies
    blocks = deps.lock_blocks(lock.read_text())
    # A transitive dependency (nobody lists it in pyproject.toml) and a direct one.
    for name in ("grpcio", "kafka-python"):
        lock.write_text(deps.LOCK.read_text().replace(blocks[name][1] + "\n", ""))
        found = deps.problems(pyproject, lock)
        assert any(line.startswith(f"{name}:") for line in found), (name, found)
        assert any("missing from requirements.lock" in line for line in found)


def test_a_dependency_added_to_pyproject_only_is_named(copies: tuple[Path, Path]) -> None:
    pyproject, lock = copies
    text = pyproject.read_text()
    pyproject.write_text(text.replace('"requests>=2.31",', '"requests>=2.31",\n    "leftpad-not-locked>=1",', 1))
    assert deps.problems(pyproject, lock) == [
        "leftpad-not-locked: declared in pyproject.toml but missing from requirements.lock (run make lock)"]
    # A range the locked version does not satisfy is a disagreement too.
    pyproject.write_text(text.replace('"requests>=2.31",', '"requests<2",', 1))
    assert any(line.startswith("requests: pyproject.toml wants <2") for line in deps.problems(pyproject, lock))


def test_check_command_exits_1_naming_the_package(copies: tuple[Path, Path]) -> None:
    """The CLI `make lint` runs: exit code and the message, on a lock missing one package."""
    pyproject, lock = copies
    blocks = deps.lock_blocks(lock.read_text())
    lock.write_text(lock.read_text().replace(blocks["py4j"][1] + "\n", ""))
    out = subprocess.run([sys.executable, str(ROOT / "tools" / "deps.py"), "check", "--pyproject", str(pyproject),
                          "--lock", str(lock)], capture_output=True, text=True, timeout=60)
    assert out.returncode == 1
    assert "py4j: required by pyspark but missing from requirements.lock" in out.stderr
