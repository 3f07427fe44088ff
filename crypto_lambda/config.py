"""Runtime settings from the environment, and the layout of the one state directory.

All runtime state lives under ``CRYPTO_LAMBDA_HOME`` (default ``./.lambda_home``): the Parquet lake,
quarantine, Spark checkpoints, benchmark figures and ``DAGSTER_HOME`` unless that is set.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

from crypto_lambda.timeutil import parse_day

# A symbol: 5-20 characters of A-Z and 0-9. The one definition: every other pattern (file names, the stream's
# parse, validation) is built from SYMBOL_CHARS or SYMBOL_RE. Anchored with \A and \Z, not ^ and $: ``$`` also
# matches before a trailing newline, and "BTCUSDT\n" would pass as a symbol (and a path component).
SYMBOL_CHARS = "[A-Z0-9]{5,20}"
SYMBOL_RE = re.compile(rf"\A{SYMBOL_CHARS}\Z")
DEFAULT_SYMBOLS = ("BTCUSDT", "ETHUSDT")
DEFAULT_START = "2017-08-17"  # Binance's first BTCUSDT day
DEFAULT_API_URL = "https://api.binance.com"
# The shipped real sample (package data; provenance in sample/README.md): 1-minute klines and Binance 1d klines.
SAMPLE_DIR = Path(__file__).resolve().parent / "sample"
SAMPLE_1M = SAMPLE_DIR / "klines_1m"
SAMPLE_DAILY = SAMPLE_DIR / "daily"
# "on": Dagster schedules and sensors start RUNNING (set by ``crypto-lambda up`` and docker-compose). Off by
# default so a daemon started by tests, ``make demo`` or a one-off ``dagster dev`` does not backfill on its own.
AUTOMATION_ENV = "CRYPTO_LAMBDA_AUTOMATION"


def validate_symbol(symbol: str) -> str:
    """Symbols become path components, so anything but ``^[A-Z0-9]{5,20}$`` is refused outright."""
    if not isinstance(symbol, str) or not SYMBOL_RE.match(symbol):
        raise ValueError(f"symbol {symbol!r} is invalid: expected 5-20 characters of A-Z and 0-9, e.g. BTCUSDT")
    return symbol


def parse_symbols(text: str) -> tuple[str, ...]:
    symbols = tuple(s.strip().upper() for s in text.split(",") if s.strip())
    if not symbols:
        raise ValueError(f"symbol list {text!r} is empty")
    return tuple(validate_symbol(s) for s in symbols)


def home_dir() -> Path:
    return Path(os.environ.get("CRYPTO_LAMBDA_HOME", ".lambda_home")).resolve()


@dataclass(frozen=True)
class Settings:
    home: Path
    symbols: tuple[str, ...] = DEFAULT_SYMBOLS
    start: dt.date = field(default_factory=lambda: parse_day(DEFAULT_START))
    minute_start: dt.date | None = None
    api_url: str = DEFAULT_API_URL

    @property
    def first_minute_day(self) -> dt.date:
        """First day of 1-minute partitions; older history comes from the exchange's 1d klines."""
        return max(self.minute_start or self.start, self.start)

    @property
    def lake(self) -> Path:
        return self.home / "lake"

    @property
    def quarantine(self) -> Path:
        return self.home / "quarantine"

    @property
    def imports(self) -> Path:
        return self.home / "imports"

    @property
    def checkpoints(self) -> Path:
        return self.home / "checkpoints"

    @property
    def bench(self) -> Path:
        return self.home / "bench"

    @property
    def dagster_home(self) -> Path:
        return Path(os.environ.get("DAGSTER_HOME") or self.home / "dagster").resolve()


SETTINGS_FILE = "settings.json"
_FILE_KEYS = ("CRYPTO_LAMBDA_SYMBOLS", "CRYPTO_LAMBDA_START", "CRYPTO_LAMBDA_MINUTE_START")


def save_settings(settings: Settings) -> None:
    """Remember symbols and dates in the state directory, so later commands on the same
    CRYPTO_LAMBDA_HOME (e.g. ``status`` after ``make demo``) see the same partitions."""
    settings.home.mkdir(parents=True, exist_ok=True)
    data = {"CRYPTO_LAMBDA_SYMBOLS": ",".join(settings.symbols), "CRYPTO_LAMBDA_START": settings.start.isoformat()}
    if settings.minute_start:
        data["CRYPTO_LAMBDA_MINUTE_START"] = settings.minute_start.isoformat()
    (settings.home / SETTINGS_FILE).write_text(json.dumps(data, indent=2) + "\n")


def _saved(home: Path) -> dict[str, str]:
    path = home / SETTINGS_FILE
    if not path.exists():
        return {}
    from crypto_lambda.errors import Fault

    try:
        data = json.loads(path.read_text(encoding="utf-8", errors="replace"))
    except json.JSONDecodeError as exc:
        data = exc
    if not isinstance(data, dict):  # a corrupt state file is a runtime fault, not the user's argument
        raise Fault(f"settings file {path} is corrupt ({data if isinstance(data, Exception) else 'not an object'}): "
                    f"fix it or delete it (it only remembers symbols and start dates; `make demo` rewrites it)")
    return {k: str(v) for k, v in data.items() if k in _FILE_KEYS}


def load_settings() -> Settings:
    """Settings from the environment, falling back to ``$CRYPTO_LAMBDA_HOME/settings.json``, then defaults.
    Every bad value raises an error naming the variable."""
    env = {**_saved(home_dir()), **os.environ}
    symbols = parse_symbols(env.get("CRYPTO_LAMBDA_SYMBOLS", ",".join(DEFAULT_SYMBOLS)))
    start = parse_day(env.get("CRYPTO_LAMBDA_START", DEFAULT_START), what="CRYPTO_LAMBDA_START")
    minute_raw = env.get("CRYPTO_LAMBDA_MINUTE_START")
    minute_start = parse_day(minute_raw, what="CRYPTO_LAMBDA_MINUTE_START") if minute_raw else None
    api_url = env.get("BINANCE_API_URL", DEFAULT_API_URL).rstrip("/")
    if not re.match(r"^https?://", api_url):
        raise ValueError(f"BINANCE_API_URL {api_url!r} must start with http:// or https://")
    return Settings(home=home_dir(), symbols=symbols, start=start, minute_start=minute_start, api_url=api_url)


def ensure_dagster_home(settings: Settings) -> Path:
    """Point DAGSTER_HOME into the state directory (unless set) and give it the project's dagster.yaml if it has
    none: an existing instance config (e.g. the Postgres one in deploy/) is the operator's and is kept."""
    path = settings.dagster_home
    path.mkdir(parents=True, exist_ok=True)
    os.environ["DAGSTER_HOME"] = str(path)
    target = path / "dagster.yaml"
    source = Path(__file__).resolve().parent.parent / "dagster.yaml"
    if source.exists() and not target.exists():
        target.write_text(source.read_text())
    return path


def automation_on() -> bool:
    """True when the environment asks for schedules and sensors to run by default."""
    return os.environ.get(AUTOMATION_ENV, "").strip().lower() in ("on", "1", "true", "yes")
