"""Readers that turn history files and REST payloads into the canonical kline schema.

Every reader returns a *reader frame*: ``symbol, open_time_ms, open, high, low, close, volume`` plus the
optional Binance columns, ``source`` and ``_raw`` (the original text of the row, kept for quarantine).
``schema.validate`` then types it and splits good rows from quarantined ones.

Formats: Binance dump files (data.binance.vision zip/csv, ms or µs open times, .CHECKSUM verified),
Kaggle/Bitstamp 1-minute CSV, freqtrade feather, Binance REST klines JSON. Which one a file is, and what its
name declares, is :mod:`crypto_lambda.formats`; this module reads its rows.

Parsing is vectorised (pandas/pyarrow); a malformed line becomes a quarantined row with a reason and
never takes a good neighbour with it.
"""

from __future__ import annotations

import csv
import io
import json
import zipfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.feather as feather

from crypto_lambda.formats import (
    ACCEPTED,
    BINANCE_DUMP,
    DUMP_FIELDS,
    FREQTRADE,
    KAGGLE_CSV,
    REST,
    REST_FIELDS,
    declared_period,
    detect_format,
    is_dump_header,
    resolve_symbol,
    verify_checksum,
    zip_member,
)
from crypto_lambda.schema import Validated, empty_quarantine, validate

FREQTRADE_COLUMNS = ("date", "open", "high", "low", "close", "volume")
WRONG_FIELD_COUNT = "wrong_field_count"
MAX_MS = 10**13  # 2286-11-20: any later "open time" is a parse error, not market data


def frame_from_rest_rows(rows: Sequence[Sequence], symbol: str, source: str = "rest") -> pd.DataFrame:
    """Binance ``/api/v3/klines`` rows (12 fields, decimals as strings) -> reader frame.

    Unrecorded optional fields may be JSON null (the replay exchange serves null where a recording lacks
    them); they stay null rather than becoming a made-up zero.
    """
    if not rows:
        return pd.DataFrame(columns=["symbol", *REST_FIELDS, "source", "_raw"])
    frame = pd.DataFrame([list(r)[:12] + [None] * (12 - len(r)) for r in rows], columns=list(REST_FIELDS))
    frame["open_time_ms"] = epoch_to_ms(frame["open_time_ms"])  # == normalize_epoch_to_ms, vectorised
    frame["close_time_ms"] = close_to_ms(frame["close_time_ms"])
    frame["symbol"] = symbol
    frame["source"] = source
    frame["_raw"] = [str(list(r)) for r in rows]
    return frame


def validate_rest_rows(rows: Sequence[Sequence], symbol: str, *, interval_ms: int, source_file: str,
                       source: str = "rest") -> Validated:
    """What the exchange client does with a REST answer: the same frame and rules as a file of klines."""
    return validate(frame_from_rest_rows(rows, symbol, source=source), source_file=source_file,
                    interval_ms=interval_ms)


def close_to_ms(values: pd.Series) -> pd.Series:
    """Close times normalised like open times (dumps switched to µs in 2025). A value that is present but not a
    plausible time becomes -1, so ``schema.validate`` quarantines it as ``close_time_mismatch``; NaN = none."""
    out = epoch_to_ms(values)
    return out.astype("float64").where(out.notna() | pd.Series(values, index=out.index).isna(), -1.0)


def epoch_to_ms(values: pd.Series | Sequence) -> pd.Series:
    """Vectorised ``timeutil.normalize_epoch_to_ms``: the unit (s/ms/µs/ns) is detected per row, because a
    single Binance history can straddle the 2025-01-01 switch from ms to µs.

    Unparseable, fractional-ms and implausible (before 1970 or after ~2286) times become NaN, so they are
    quarantined as ``unparseable_open_time`` instead of overflowing the timestamp conversion.
    """
    v = pd.to_numeric(pd.Series(values, dtype=object if not len(values) else None), errors="coerce")
    if pd.api.types.is_integer_dtype(v.dtype):
        a = v.to_numpy(dtype="int64")
        out = np.select([a < 10**11, a < 10**14, a < 10**17], [a * 1000, a, a // 1000], a // 10**6)
        if ((a >= 0) & (out < MAX_MS)).all():
            return pd.Series(out, index=v.index, dtype="int64")
    a = v.to_numpy(dtype="float64")
    with np.errstate(invalid="ignore", over="ignore"):
        out = np.select([a < 1e11, a < 1e14, a < 1e17], [a * 1000, a, np.floor(a / 1000)], np.floor(a / 1e6))
        plausible = np.isfinite(out) & (out >= 0) & (out < MAX_MS) & (out == np.floor(out))
    return pd.Series(np.where(plausible, out, np.nan), index=v.index, dtype="float64")


def _read_text(path: Path) -> str:
    """Whole CSV text (from the zip member for dumps); undecodable bytes become U+FFFD, not a crash."""
    if path.suffix.lower() == ".zip":
        try:
            with zipfile.ZipFile(path) as zf:
                data = zf.read(zip_member(path, zf))
        except zipfile.BadZipFile as exc:
            raise ValueError(f"{path}: not a valid zip file ({exc}); {ACCEPTED}") from exc
    else:
        data = path.read_bytes()
    return data.decode("utf-8-sig", errors="replace")


# ---------------------------------------------------------------------------------------------- CSV parsing

def _bad_rows(path: Path, symbol: str, raw: list[str], open_field: list[str], reason: str) -> pd.DataFrame:
    if not raw:
        return empty_quarantine()
    return pd.DataFrame({
        "source_file": str(path),
        "symbol": symbol,
        "open_time_ms": pd.array(epoch_to_ms(open_field).round(), dtype="Int64"),
        "reason": reason,
        "raw": raw,
    })


def _split_csv(path: Path, symbol: str, lines: list[str], names: Sequence[str]) -> tuple[pd.DataFrame,
                                                                                       pd.DataFrame]:
    """Lines -> (string-typed-or-numeric frame of well-formed rows with ``_raw``, quarantine rows for lines
    with the wrong number of fields). ``read_csv`` does the parsing; we only pre-sort lines by field count."""
    want = len(names) - 1
    ok = [line for line in lines if line.count(",") == want]
    wrong = [line for line in lines if line.count(",") != want]
    bad = _bad_rows(path, symbol, wrong, [w.split(",", 1)[0] for w in wrong], WRONG_FIELD_COUNT)
    if not ok:
        return pd.DataFrame(columns=[*names, "_raw"]), bad
    frame = pd.read_csv(io.StringIO("\n".join(ok)), header=None, names=list(names), quoting=csv.QUOTE_NONE,
                        float_precision="round_trip", skip_blank_lines=False, low_memory=False)
    if len(frame) != len(ok):  # defensive: never misalign raw text and parsed values
        frame = pd.DataFrame([line.split(",") for line in ok], columns=list(names))
    frame["_raw"] = ok
    return frame, bad


def _data_lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.strip()]


def _finish(path: Path, frame: pd.DataFrame, bad: pd.DataFrame,
            period_ms: tuple[int, int] | None = None) -> Validated:
    result = validate(frame, source_file=str(path), period_ms=period_ms)
    if len(bad):
        parts = [b for b in (result.bad, bad) if len(b)]
        result.bad = pd.concat(parts, ignore_index=True)
    return result


def _load_dump(path: Path, symbol: str | None) -> Validated:
    symbol = resolve_symbol(path, symbol)
    lines = _data_lines(_read_text(path))
    if lines and is_dump_header(lines[0]):
        lines = lines[1:]
    frame, bad = _split_csv(path, symbol, lines, DUMP_FIELDS)
    frame["open_time_ms"] = epoch_to_ms(frame["open_time_ms"])
    frame["close_time_ms"] = close_to_ms(frame["close_time_ms"])
    frame["symbol"] = symbol
    frame["source"] = BINANCE_DUMP
    return _finish(path, frame, bad, period_ms=declared_period(path))


def _load_kaggle(path: Path, symbol: str | None) -> Validated:
    symbol = resolve_symbol(path, symbol, from_name=False)
    lines = _data_lines(_read_text(path))
    header = [h.strip().lower() for h in lines[0].split(",")]
    frame, bad = _split_csv(path, symbol, lines[1:], header)
    volume = "volume" if "volume" in header else next(h for h in header if h.startswith("volume"))
    out = pd.DataFrame({
        "symbol": symbol,
        "open_time_ms": epoch_to_ms(frame["timestamp"]),
        "open": frame["open"], "high": frame["high"], "low": frame["low"], "close": frame["close"],
        "volume": frame[volume],
        "source": KAGGLE_CSV,
        "_raw": frame["_raw"],
    }, index=frame.index)
    if "volume_(currency)" in header:  # the original Bitstamp dataset also has quote volume
        out["quote_volume"] = frame["volume_(currency)"]
    return _finish(path, out, bad)


# ---------------------------------------------------------------------------------------------- binary/JSON

def _load_freqtrade(path: Path, symbol: str | None) -> Validated:
    symbol = resolve_symbol(path, symbol)
    try:
        table = feather.read_table(path)
    except (pa.ArrowInvalid, OSError) as exc:
        raise ValueError(f"{path}: not a readable feather file ({exc}); {ACCEPTED}") from exc
    missing = [c for c in FREQTRADE_COLUMNS if c not in table.column_names]
    if missing:
        raise ValueError(f"{path}: freqtrade feather needs columns {', '.join(FREQTRADE_COLUMNS)}; "
                         f"missing {', '.join(missing)}")
    original = table.select(list(FREQTRADE_COLUMNS)).to_pandas()
    try:
        ns = table["date"].cast(pa.timestamp("ns", tz="UTC")).cast(pa.int64()).to_pandas()
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
        kind = table.schema.field("date").type
        raise ValueError(f"{path}: freqtrade column 'date' must be a timestamp, not {kind}") from exc
    open_ms = ns // 10**6  # nulls (NaN) stay NaN and are quarantined as unparseable_open_time
    frame = original[list(FREQTRADE_COLUMNS[1:])].copy()
    frame["open_time_ms"] = open_ms
    frame["symbol"] = symbol
    frame["source"] = FREQTRADE
    # Row position as a placeholder _raw: building text for 130k good rows costs seconds; only bad rows
    # get their real text below.
    frame["_raw"] = np.arange(len(frame)).astype(str)
    result = validate(frame, source_file=str(path))
    if len(result.bad):
        positions = result.bad["raw"].astype(int).to_numpy()
        rows = original.iloc[positions]
        result.bad["raw"] = rows.astype(str).agg(",".join, axis=1).to_numpy()
    return result


def _load_rest_json(path: Path, symbol: str | None) -> Validated:
    symbol = resolve_symbol(path, symbol)
    try:
        payload = json.loads(path.read_text(errors="replace"))
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path}: not valid JSON ({exc}); {ACCEPTED}") from exc
    if not isinstance(payload, list):
        is_error = isinstance(payload, dict) and "msg" in payload
        hint = f" (exchange error: {payload.get('msg')})" if is_error else ""
        raise ValueError(f"{path}: expected a JSON array of kline rows{hint}; {ACCEPTED}")
    ok = [r for r in payload if isinstance(r, list) and len(r) == len(REST_FIELDS)]
    wrong = [r for r in payload if not (isinstance(r, list) and len(r) == len(REST_FIELDS))]
    first_fields = [str(r[0]) if isinstance(r, list) and r else "" for r in wrong]
    bad = _bad_rows(path, symbol, [json.dumps(r) for r in wrong], first_fields, WRONG_FIELD_COUNT)
    return _finish(path, frame_from_rest_rows(ok, symbol, source=REST), bad)


_LOADERS = {
    BINANCE_DUMP: _load_dump, KAGGLE_CSV: _load_kaggle, FREQTRADE: _load_freqtrade, REST: _load_rest_json,
}


def load(path: Path | str, *, symbol: str | None = None) -> Validated:
    """Read any supported history file and validate it.

    Good rows come back in the canonical schema; bad rows carry a reason and ``source_file = path``.
    Raises FileNotFoundError for a missing file and ValueError (naming the file and the accepted formats)
    for an unknown layout, a non-1m interval, a missing symbol, a .CHECKSUM mismatch or a file without a
    single valid row (an importer must not report such a file as imported).
    """
    path = Path(path)
    fmt = detect_format(path)
    verify_checksum(path)
    result = _LOADERS[fmt](path, symbol)
    if not len(result.good):
        raise ValueError(f"{path}: no valid kline row{_reasons(result.bad)}; fix or remove the file")
    return result


def _reasons(bad: pd.DataFrame) -> str:
    """Why a file has no valid row, for its error message: the row count and the commonest reasons."""
    if not len(bad):
        return " (the file holds no kline rows)"
    counts = bad["reason"].value_counts()
    top = ", ".join(f"{reason} x{n}" for reason, n in counts.head(3).items())
    return f" ({len(bad):,} row(s) invalid: {top}{', ...' if len(counts) > 3 else ''})"
