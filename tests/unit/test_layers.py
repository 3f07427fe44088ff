"""The layer contracts (pyproject.toml ``[tool.importlinter]``, run by ``make lint``) hold on the tree, and each
kind of breach fails them: a lower layer importing a higher one, the core library importing a transport or
orchestration library, the product path importing the replay exchange. Run on a copy of the packages, so the
breach is real source code that import-linter parses, not a mocked graph."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
PACKAGES = ("crypto_lambda", "streaming_service", "crypto_assets", "crypto_lambda_app", "replay_exchange",
            "crypto_lambda_http")


def lint_imports(root: Path) -> subprocess.CompletedProcess:
    exe = Path(sys.executable).with_name("lint-imports")
    env = {**os.environ, "PYTHONPATH": str(root)}
    return subprocess.run([str(exe), "--no-cache", "--config", str(root / "pyproject.toml")], cwd=root, env=env,
                          capture_output=True, text=True, timeout=120)


def test_the_tree_keeps_every_contract() -> None:
    result = lint_imports(REPO)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "broken" in result.stdout and " 0 broken" in result.stdout


@pytest.mark.parametrize(("module", "line", "contract"), [
    ("crypto_lambda/timeutil.py", "import crypto_assets.definitions", "Layers"),
    ("streaming_service/topics.py", "import crypto_lambda_app.cli", "Layers"),
    ("crypto_lambda/lake/read.py", "import kafka", "core library imports no"),
    ("crypto_lambda/config.py", "import argparse", "core library imports no"),
    ("streaming_service/consumer.py", "import dagster", "speed layer runs without Dagster"),
    ("crypto_assets/definitions.py", "import replay_exchange.server", "does not depend on the replay exchange"),
])
def test_a_breaking_import_fails_the_lint(tmp_path: Path, module: str, line: str, contract: str) -> None:
    for package in PACKAGES:
        shutil.copytree(REPO / package, tmp_path / package,
                        ignore=shutil.ignore_patterns("__pycache__", "sample"))
    shutil.copy(REPO / "pyproject.toml", tmp_path / "pyproject.toml")
    assert lint_imports(tmp_path).returncode == 0  # the copy alone keeps them
    target = tmp_path / module
    target.write_text(target.read_text() + f"\n{line}  # the breach under test\n")
    result = lint_imports(tmp_path)
    assert result.returncode != 0, result.stdout
    broken = result.stdout.split("Broken contracts", 1)[-1]
    assert contract in broken, result.stdout
    assert module.removesuffix(".py").replace("/", ".") in broken, result.stdout
