"""What a history file is, before any row is read: the accepted formats and their names, detection from the
file name and first lines, the interval and symbol a name declares, the month or day a data.binance.vision
name declares, and its published .CHECKSUM. Cheap, so an import can reject a bad batch before writing."""

from __future__ import annotations

import datetime as dt
import hashlib
import re
import zipfile
from pathlib import Path

import pandas as pd

from crypto_lambda.config import SYMBOL_CHARS, validate_symbol
from crypto_lambda.timeutil import day_start_ms

REST_FIELDS = (
    "open_time_ms", "open", "high", "low", "close", "volume", "close_time_ms", "quote_volume", "trades",
    "taker_buy_base", "taker_buy_quote", "ignore",
)
DUMP_FIELDS = REST_FIELDS  # data.binance.vision CSVs carry the same 12 fields as /api/v3/klines

BINANCE_DUMP, KAGGLE_CSV, FREQTRADE, REST = "binance_dump", "kaggle_csv", "freqtrade", "rest"
SUPPORTED_SUFFIXES = (".zip", ".csv", ".feather", ".json")
ACCEPTED = (
    "accepted formats: Binance dump SYMBOL-1m-YYYY-MM[-DD].zip/.csv from data.binance.vision; "
    "Kaggle/Bitstamp 1-minute CSV with header Timestamp,Open,High,Low,Close,Volume; "
    "freqtrade .feather (date,open,high,low,close,volume); Binance REST klines .json (array of 12-field rows)"
)

# SYMBOL-1m-..., BASE_QUOTE-1m.feather (freqtrade); the interval token decides whether we accept the file.
_NAME_RE = re.compile(
    r"^(?P<symbol>[A-Za-z0-9]+(?:_[A-Za-z0-9]+)?)-(?P<interval>\d+(?:mo|[smhdwM]))(?=[-._]|$)")
_DUMP_HEADER = ("open_time", "open time", "opentime")
_DUMP_NAME_RE = re.compile(f"^{SYMBOL_CHARS}"
                           r"-1m-(?P<year>\d{4})-(?P<month>\d{2})(?:-(?P<day>\d{2}))?\.(?:csv|zip)$")
_HEX64 = re.compile(r"^[0-9a-fA-F]{64}$")


# ---------------------------------------------------------------------------------------------- detection

def _interval_and_symbol(path: Path) -> tuple[str | None, str | None]:
    match = _NAME_RE.match(path.name)
    if not match:
        return None, None
    return match["interval"], match["symbol"].replace("_", "").upper()


def resolve_symbol(path: Path, given: str | None, *, from_name: bool = True) -> str:
    """An explicit symbol wins; else the file name's ``SYMBOL-1m-`` prefix; else a clear error."""
    if given is not None:
        return validate_symbol(given)
    name_symbol = _interval_and_symbol(path)[1] if from_name else None
    if name_symbol is None:
        raise ValueError(f"{path}: the file does not say which symbol it holds; "
                         "pass a symbol (--symbol BTCUSDT)")
    try:
        return validate_symbol(name_symbol)
    except ValueError as exc:
        raise ValueError(f"{path}: symbol {name_symbol!r} from the file name is invalid; "
                         "pass a symbol (--symbol BTCUSDT)") from exc


def _check_interval(path: Path) -> None:
    interval = _interval_and_symbol(path)[0]
    if interval is not None and interval != "1m":
        raise ValueError(f"{path}: interval {interval!r} is not supported: "
                         "only 1-minute klines (SYMBOL-1m-...) can be imported")


def zip_member(path: Path, zf: zipfile.ZipFile) -> str:
    csvs = [n for n in zf.namelist() if n.lower().endswith(".csv") and not n.endswith("/")]
    preferred = f"{path.stem}.csv"
    if preferred in csvs:
        return preferred
    if len(csvs) == 1:
        return csvs[0]
    raise ValueError(f"{path}: expected exactly one .csv inside the zip, found {len(csvs)}; {ACCEPTED}")


def _head_lines(path: Path, limit: int = 10) -> list[str]:
    """First non-blank lines, reading only the first 64 KiB (detection must stay cheap for big dumps)."""
    if path.suffix.lower() == ".zip":
        try:
            with zipfile.ZipFile(path) as zf, zf.open(zip_member(path, zf)) as fh:
                head = fh.read(1 << 16)
        except zipfile.BadZipFile as exc:
            raise ValueError(f"{path}: not a valid zip file ({exc}); {ACCEPTED}") from exc
    else:
        with open(path, "rb") as fh:
            head = fh.read(1 << 16)
    lines = [line.strip() for line in head.decode("utf-8-sig", errors="replace").splitlines()]
    return [line for line in lines if line][:limit]


def _is_kaggle_header(line: str) -> bool:
    return line.lower().replace(" ", "").startswith("timestamp,open,high,low,close,volume")


def is_dump_header(line: str) -> bool:
    return line.lower().lstrip("\ufeff").startswith(_DUMP_HEADER)


def detect_format(path: Path | str) -> str:
    """Which reader a file needs (``binance_dump``, ``kaggle_csv``, ``freqtrade``, ``rest``), from its name
    and first line; cheap, so importers can reject a bad batch before writing anything."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such file")
    if not path.is_file():
        raise ValueError(f"{path}: not a regular file; {ACCEPTED}")
    suffix = path.suffix.lower()
    if suffix not in SUPPORTED_SUFFIXES:
        raise ValueError(f"{path}: unsupported file type {suffix or '(no extension)'!r}; {ACCEPTED}")
    _check_interval(path)
    if suffix == ".feather":
        return FREQTRADE
    if suffix == ".json":
        return REST
    head = _head_lines(path)
    if not head:
        raise ValueError(f"{path}: the file is empty; {ACCEPTED}")
    if _is_kaggle_header(head[0]):
        return KAGGLE_CSV
    if _DUMP_NAME_RE.match(path.name) or is_dump_header(head[0]) or any(map(_looks_like_dump_row, head)):
        return BINANCE_DUMP
    raise ValueError(f"{path}: unrecognised CSV layout (first line {head[0][:80]!r}); {ACCEPTED}")


def _looks_like_dump_row(line: str) -> bool:
    fields = line.split(",")
    return len(fields) == len(DUMP_FIELDS) and pd.notna(pd.to_numeric(fields[0], errors="coerce"))


def verify_checksum(path: Path) -> None:
    """data.binance.vision publishes ``<file>.CHECKSUM`` ("<sha256>  <name>"); a mismatch means a truncated
    or tampered download, which must not reach the lake."""
    sibling = path.with_name(path.name + ".CHECKSUM")
    if not sibling.is_file():
        return
    tokens = sibling.read_text(errors="replace").split()
    if not tokens or not _HEX64.match(tokens[0]):
        raise ValueError(f"{sibling}: malformed checksum file (expected '<sha256 hex>  <file name>')")
    expected = tokens[0].lower()
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    actual = digest.hexdigest()
    if actual != expected:
        raise ValueError(f"{path}: sha256 mismatch: file has {actual}, {sibling.name} says {expected}")


def declared_period(path: Path) -> tuple[int, int] | None:
    """[start, end) in epoch ms of the month or day a data.binance.vision file name declares
    (``BTCUSDT-1m-2025-01.zip`` = January 2025), None for other names: a row outside it is misfiled."""
    match = _DUMP_NAME_RE.match(path.name)
    if not match:
        return None
    year, month, day = int(match["year"]), int(match["month"]), match["day"]
    try:
        first = dt.date(year, month, int(day) if day else 1)
    except ValueError as exc:
        raise ValueError(f"{path}: the file name declares an impossible date ({exc})") from exc
    if day:
        last = first + dt.timedelta(days=1)
    else:
        last = dt.date(year + month // 12, month % 12 + 1, 1)
    return day_start_ms(first), day_start_ms(last)
