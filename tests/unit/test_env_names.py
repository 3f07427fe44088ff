"""One list of deployment settings (crypto_lambda/deploy.py ENV_VARS) against every place that names one: the
code, docker-compose.yml, .env.example, deploy/dagster.yaml and the README. Reads files only."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

from tests.support import yaml_leaves

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "docker-compose.yml"
DEPLOY = ROOT / "deploy"

PRODUCT_PACKAGES = ("crypto_lambda", "streaming_service", "crypto_assets", "crypto_lambda_app", "replay_exchange",
                    "crypto_lambda_http")
# os.environ.get("X"), os.environ["X"], os.getenv("X"), env.get("X") / env["X"] on a copy of the environment,
# and the FOO_ENV = "X" constants the code reads through.
_ENV_READ = re.compile(r"""(?:environ|\benv|getenv)\s*(?:\.(?:get|setdefault|pop))?\s*[(\[]\s*"""
                       r"""["']([A-Z][A-Z0-9_]+)["']""")
_ENV_CONST = re.compile(r"""\b[A-Z_]*_ENV\s*=\s*["']([A-Z][A-Z0-9_]+)["']""")


def _names_the_code_reads() -> dict[str, str]:
    found: dict[str, str] = {}
    for package in PRODUCT_PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            text = path.read_text()
            for name in _ENV_READ.findall(text) + _ENV_CONST.findall(text):
                found.setdefault(name, str(path.relative_to(ROOT)))
    return found


def _dagster_yaml_env_names() -> set[str]:
    return {value for path, value in yaml_leaves(yaml.safe_load((DEPLOY / "dagster.yaml").read_text()))
            if path.endswith(".env")}


def test_compose_the_code_and_the_docs_agree_on_every_variable_name() -> None:
    """One list (crypto_lambda/deploy.py ENV_VARS) names every variable. A name the code reads, compose sets or
    interpolates, .env.example offers or deploy/dagster.yaml reads must be on it; every name on it must be read
    somewhere and documented in the README. A rename in one place therefore fails here."""
    from crypto_lambda import deploy

    known = {v.name for v in deploy.ENV_VARS}
    read = _names_the_code_reads()
    unknown = {name: where for name, where in read.items() if name not in known}
    assert not unknown, f"the code reads variables crypto_lambda/deploy.py does not list: {unknown}"
    pg = _dagster_yaml_env_names()
    assert pg and pg <= deploy.names("setting"), pg - deploy.names("setting")
    unread = deploy.names("setting", "internal") - set(read) - pg
    assert not unread, f"listed in deploy.ENV_VARS but read by no code or deploy/dagster.yaml: {sorted(unread)}"

    text = COMPOSE.read_text()
    interpolated = set(re.findall(r"\$\{([A-Za-z_][A-Za-z0-9_]*)", text))
    assert not interpolated - known, f"docker-compose.yml interpolates unknown names: {interpolated - known}"
    unused = deploy.names("compose") - interpolated
    assert not unused, f"compose-only names docker-compose.yml never reads: {sorted(unused)}"
    for name, default in re.findall(r"\$\{([A-Z_][A-Z0-9_]*):-([^}]*)\}", text):
        var = deploy.BY_NAME[name]
        if var.scope == "compose":  # compose owns these defaults: the list must say the same
            assert default == var.default, f"compose defaults {name} to {default!r}, deploy.py to {var.default!r}"
    raw = yaml.safe_load(text)
    project_env = dict(raw["x-lambda-env"]) | dict(raw["x-dagster-env"])
    for service in raw["services"].values():
        if "image" not in service or str(service["image"]).startswith("crypto-lambda"):  # ours, not an image's own
            env = service.get("environment") or {}
            project_env |= {k: v for k, v in env.items() if k != "<<"}
    strays = set(project_env) - deploy.names("setting")
    assert not strays, f"project containers get variables the code does not read: {sorted(strays)}"
    assert set(raw["x-dagster-env"]) == pg, "compose's Dagster env and deploy/dagster.yaml name different variables"

    example = set(re.findall(r"^#?\s*([A-Z][A-Z0-9_]+)=", (ROOT / ".env.example").read_text(), re.M))
    assert example and not example - known, f".env.example offers unknown names: {example - known}"
    readme = (ROOT / "README.md").read_text()
    undocumented = {n for n in deploy.names("setting", "compose") if f"`{n}`" not in readme}
    assert not undocumented, f"README documents none of: {sorted(undocumented)}"
