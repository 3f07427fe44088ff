"""The Python dependency lock: make it, install from it, and check it against pyproject.toml and the venv.

`requirements.lock` is the one source of installed versions (every package, every extra, the build tools, with
hashes). `pyproject.toml` keeps the compatible ranges people get with `pip install crypto-lambda`. This script
is run by the Makefile, `.ci/run` and the Dockerfile; `install` and `compile` use the standard library only, so
they run before the venv has anything in it.

    python tools/deps.py compile        # regenerate the lock from pyproject.toml (uv pip compile; `make lock`)
    python tools/deps.py compile --upgrade-package NAME   # move one package, keep the rest
    python tools/deps.py install        # install the lock into the running interpreter's environment
    python tools/deps.py check          # pyproject.toml vs the lock vs what is installed; exit 1 naming packages
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
import tempfile
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PYPROJECT = ROOT / "pyproject.toml"
LOCK = ROOT / "requirements.lock"
PYTHON_VERSION = "3.11"  # the oldest Python the project supports (requires-python): the lock must install there
# Build tools that build the one sdist (pyspark) and the project itself; pinned in the lock like everything else.
BUILD_TOOLS = ("setuptools", "wheel")
_BLOCK = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==(\S+)", re.M)


def canonical(name: str) -> str:
    """PEP 503 name: `Dagster_Pyspark` and `dagster-pyspark` are one package."""
    return re.sub(r"[-_.]+", "-", name).lower()


def lock_blocks(text: str) -> dict[str, tuple[str, str]]:
    """{canonical name: (version, the whole requirement block with its hashes)} of a uv/pip-compile lock."""
    blocks: dict[str, tuple[str, str]] = {}
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        m = _BLOCK.match(lines[i])
        if not m:
            i += 1
            continue
        block = [lines[i]]
        while block[-1].rstrip().endswith("\\") and i + 1 < len(lines):
            i += 1
            block.append(lines[i])
        blocks[canonical(m.group(1))] = (m.group(2), "\n".join(block))
        i += 1
    return blocks


def direct_requirements(pyproject: Path = PYPROJECT) -> list[str]:
    """Every requirement string pyproject.toml declares: dependencies, all extras and the build backend's."""
    data = tomllib.loads(pyproject.read_text())
    reqs = list(data["project"].get("dependencies", []))
    for extra in data["project"].get("optional-dependencies", {}).values():
        reqs.extend(extra)
    reqs.extend(data["build-system"]["requires"])
    return reqs


def compile_lock(upgrade: list[str] | None = None) -> int:
    """Resolve pyproject.toml (all extras) plus the build tools into requirements.lock with hashes.

    uv starts from the existing lock's versions, so only what pyproject.toml forces (or `upgrade` names) moves.
    """
    uv = shutil.which("uv", path=str(Path(sys.executable).parent)) or shutil.which("uv")
    if not uv:
        print("deps: uv not found (it is in the dev extra: make venv first)", file=sys.stderr)
        return 1
    with tempfile.NamedTemporaryFile("w", suffix=".in", delete=False) as extra:
        extra.write("\n".join(BUILD_TOOLS) + "\n")
    cmd = [uv, "pip", "compile", "pyproject.toml", extra.name, "--all-extras", "--generate-hashes",
           "--python-version", PYTHON_VERSION, "--no-header", "--quiet", "-o", str(LOCK.name)]
    cmd += [arg for name in upgrade or [] for arg in ("--upgrade-package", name)]
    try:
        rc = subprocess.call(cmd, cwd=ROOT)
    finally:
        Path(extra.name).unlink(missing_ok=True)
    if rc == 0:
        # uv names the temporary input in `# via` comments; the lock must not depend on a temp path.
        LOCK.write_text(re.sub(r"#\s+via\s+-r /\S+\.in|#\s+-r /\S+\.in", "# via build tools", LOCK.read_text()))
        print(f"deps: wrote {LOCK.name} ({len(lock_blocks(LOCK.read_text()))} packages); now run make test")
    return rc


def install(editable: bool = True) -> int:
    """Install exactly the lock: build tools first, then every package without resolving, then the project."""
    blocks = lock_blocks(LOCK.read_text())
    missing = [t for t in BUILD_TOOLS if t not in blocks]
    if missing:
        print(f"deps: {LOCK.name} lacks the build tools {missing}: run make lock", file=sys.stderr)
        return 1
    pip = [sys.executable, "-m", "pip", "install", "--quiet", "--require-hashes", "--no-deps"]
    with tempfile.NamedTemporaryFile("w", suffix=".txt", delete=False) as tools:
        tools.write("\n".join(blocks[t][1] for t in BUILD_TOOLS) + "\n")
    steps = [
        pip + ["-r", tools.name],
        # --no-build-isolation: pyspark (an sdist) builds with the locked setuptools, not whatever is newest.
        pip + ["--no-build-isolation", "-r", str(LOCK)],
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation",
         *(["-e"] if editable else []), str(ROOT)],
    ]
    try:
        for step in steps:
            if subprocess.call(step) != 0:
                print(f"deps: failed: {' '.join(step[3:])}", file=sys.stderr)
                return 1
    finally:
        Path(tools.name).unlink(missing_ok=True)
    return check()


def problems(pyproject: Path = PYPROJECT, lock: Path = LOCK) -> list[str]:
    """What disagrees between pyproject.toml, the lock and this environment, one line per package."""
    from importlib import metadata

    from packaging.requirements import Requirement

    blocks = lock_blocks(lock.read_text())
    found: list[str] = []
    for text in direct_requirements(pyproject):
        req = Requirement(text)
        name = canonical(req.name)
        if name not in blocks:
            found.append(f"{req.name}: declared in pyproject.toml but missing from {LOCK.name} (run make lock)")
        elif not req.specifier.contains(blocks[name][0], prereleases=True):
            found.append(f"{req.name}: pyproject.toml wants {req.specifier}, {LOCK.name} has {blocks[name][0]}"
                         " (run make lock)")
    installed = {canonical(d.metadata["Name"]): d for d in metadata.distributions()}
    for name, (version, _) in sorted(blocks.items()):
        dist = installed.get(name)
        if dist is None:
            found.append(f"{name}: in {LOCK.name} but not installed (make venv)")
        elif dist.version != version:
            found.append(f"{name}: {LOCK.name} has {version}, the environment has {dist.version} (make venv)")
    # The lock must be closed: each installed package's own requirements are locked too.
    for name, dist in sorted(installed.items()):
        if name not in blocks:
            continue
        for text in dist.requires or []:
            req = Requirement(text)
            if req.marker and not req.marker.evaluate({"extra": ""}):
                continue
            if canonical(req.name) not in blocks:
                found.append(f"{req.name}: required by {name} but missing from {LOCK.name} (run make lock)")
    return sorted(set(found))


def check(pyproject: Path = PYPROJECT, lock: Path = LOCK) -> int:
    found = problems(pyproject, lock)
    for line in found:
        print(f"deps: {line}", file=sys.stderr)
    if not found:
        print(f"deps: {lock.name} matches {pyproject.name} and the environment")
    return 1 if found else 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("command", choices=["compile", "install", "check"])
    parser.add_argument("--no-editable", action="store_true", help="install: the project as a regular package")
    parser.add_argument("--pyproject", type=Path, default=PYPROJECT, help="check: the pyproject.toml to compare")
    parser.add_argument("--lock", type=Path, default=LOCK, help="check: the lock to compare")
    parser.add_argument("--upgrade-package", action="append", metavar="NAME",
                        help="compile: move NAME to its newest allowed version (repeatable)")
    args = parser.parse_args(argv)
    if args.command == "install":
        return install(editable=not args.no_editable)
    if args.command == "check":
        return check(args.pyproject, args.lock)
    return compile_lock(args.upgrade_package)


if __name__ == "__main__":
    sys.exit(main())
