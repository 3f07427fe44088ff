"""Binance spot REST client for klines: pagination, request-weight tracking and retries.

Callers think in half-open ranges [start, end); Binance's ``endTime`` is inclusive on open time, so
pages are asked for with ``endTime = end - 1``. 429/418 are retried after ``Retry-After`` seconds (or
exponential backoff when absent); 5xx and connection errors after exponential backoff with full jitter;
any other 4xx is a caller error and raises at once with Binance's message. Works unchanged against the
replay exchange (set ``BINANCE_API_URL``).
"""

from __future__ import annotations

import logging
import os
import random
import re
import time
from collections.abc import Callable
from typing import Any

import requests

from crypto_lambda import readers, schema
from crypto_lambda.config import DEFAULT_API_URL
from crypto_lambda.timeutil import interval_ms, iso_ms

log = logging.getLogger(__name__)

PAGE_LIMIT = 1000
WEIGHT_HEADER = "X-MBX-USED-WEIGHT-1M"


class ExchangeError(RuntimeError):
    """The exchange refused a request or kept failing; the message says what was asked for."""

    def __init__(self, message: str, status: int | None = None, code: int | None = None) -> None:
        super().__init__(message)
        self.status, self.code = status, code


class BinanceClient:
    """Thin requests-based client; one ``requests.Session`` per client (connection reuse)."""

    def __init__(self, base_url: str | None = None, *, max_attempts: int = 5, backoff_base: float = 0.5,
                 backoff_max: float = 30.0, timeout: float = 30.0, session: requests.Session | None = None,
                 sleep: Callable[[float], None] = time.sleep, max_retry_after: float = 300.0,
                 rng: random.Random | None = None) -> None:
        self.base_url = (base_url or os.environ.get("BINANCE_API_URL") or DEFAULT_API_URL).rstrip("/")
        if max_attempts < 1:
            raise ValueError(f"max_attempts must be >= 1, got {max_attempts}")
        self.max_attempts, self.backoff_base, self.backoff_max = max_attempts, backoff_base, backoff_max
        self.timeout, self.max_retry_after = timeout, max_retry_after
        self.session = session or requests.Session()
        self.sleep = sleep
        self.rng = rng or random.Random()
        self.last_used_weight: int | None = None
        self.requests_sent = 0

    def close(self) -> None:
        self.session.close()

    def __enter__(self) -> BinanceClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- plumbing -------------------------------------------------------------------------------------

    def _backoff(self, attempt: int) -> float:
        """Full jitter: uniform in [0, min(max, base * 2**(attempt-1))]."""
        return self.rng.uniform(0, min(self.backoff_max, self.backoff_base * 2 ** (attempt - 1)))

    def _get(self, path: str, params: dict[str, Any] | None, what: str) -> Any:
        """GET with retries; ``what`` names the request in errors (symbol, interval, range)."""
        url = f"{self.base_url}{path}"
        last = "no response"
        last_status: int | None = None
        for attempt in range(1, self.max_attempts + 1):
            try:
                self.requests_sent += 1
                resp = self.session.get(url, params=params, timeout=self.timeout)
            except (requests.ConnectionError, requests.Timeout) as exc:
                last, last_status, delay = f"connection error: {_reason(exc)}", None, self._backoff(attempt)
            else:
                weight = resp.headers.get(WEIGHT_HEADER)
                if weight is not None and weight.isdigit():
                    self.last_used_weight = int(weight)
                if resp.status_code == 200:
                    return resp.json()
                code, msg = _error_body(resp)
                last_status = resp.status_code
                last = f"HTTP {resp.status_code}" + (f" code {code}: {msg}" if msg else "")
                if resp.status_code in (418, 429):
                    delay = _retry_after(resp)
                    if delay is None:
                        delay = self._backoff(attempt)
                    elif delay > self.max_retry_after:
                        raise ExchangeError(f"{what}: {last}; Retry-After {delay:.0f}s exceeds "
                                            f"{self.max_retry_after:.0f}s, giving up", resp.status_code, code)
                elif resp.status_code >= 500:
                    delay = self._backoff(attempt)
                else:
                    raise ExchangeError(f"{what}: {last}", resp.status_code, code)
            if attempt == self.max_attempts:
                break
            log.warning("%s: %s; retry %d/%d in %.2fs", what, last, attempt, self.max_attempts - 1, delay)
            self.sleep(delay)
        raise ExchangeError(f"{what}: gave up after {self.max_attempts} attempts; last: {last}", last_status)

    # -- endpoints ------------------------------------------------------------------------------------

    def ping(self) -> None:
        self._get("/api/v3/ping", None, f"ping {self.base_url}")

    def server_time(self) -> int:
        return int(self._get("/api/v3/time", None, f"server time from {self.base_url}")["serverTime"])

    def exchange_symbols(self) -> set[str]:
        """Symbols listed by exchangeInfo (weight 20 on Binance: call once, not per request)."""
        info = self._get("/api/v3/exchangeInfo", None, f"exchangeInfo from {self.base_url}")
        return {s["symbol"] for s in info.get("symbols", [])}

    def klines_rows(self, symbol: str, interval: str, start_ms: int, end_ms: int) -> list[list]:
        """All raw kline rows with open time in [start_ms, end_ms), paged 1000 at a time."""
        step = interval_ms(interval)
        what = f"{symbol} {interval} klines [{iso_ms(start_ms)}, {iso_ms(end_ms)}) from {self.base_url}"
        rows: list[list] = []
        cursor = start_ms
        while cursor < end_ms:
            page = self._get("/api/v3/klines", {"symbol": symbol, "interval": interval, "startTime": cursor,
                                                "endTime": end_ms - 1, "limit": PAGE_LIMIT}, what)
            if not isinstance(page, list):
                raise ExchangeError(f"{what}: expected a JSON array, got {type(page).__name__}")
            rows.extend(r for r in page if cursor <= int(r[0]) < end_ms)
            if len(page) < PAGE_LIMIT:
                break  # a short page means nothing more up to endTime
            nxt = int(page[-1][0]) + step
            if nxt <= cursor:
                raise ExchangeError(f"{what}: page did not advance past {iso_ms(cursor)}")
            cursor = nxt
        return rows

    def klines(self, symbol: str, start_ms: int, end_ms: int, interval: str = "1m") -> schema.Validated:
        """Klines in [start_ms, end_ms), typed and validated (``source = "rest"``)."""
        rows = self.klines_rows(symbol, interval, start_ms, end_ms)
        return readers.validate_rest_rows(
            rows, symbol, interval_ms=interval_ms(interval), source_file=f"{self.base_url}/api/v3/klines?"
            f"symbol={symbol}&interval={interval}&startTime={start_ms}&endTime={end_ms - 1}")


def _reason(exc: requests.RequestException) -> str:
    """The useful end of a requests/urllib3 error ('Connection refused', 'Name or service not known', 'read
    timed out') instead of its three nested reprs, so the error stays one readable line."""
    if isinstance(exc, requests.Timeout):
        return "timed out"
    found = re.findall(r"\[Errno -?\d+\] ([^'\")\]]+)", str(exc))
    return found[-1].strip() if found else type(exc).__name__


def _error_body(resp: requests.Response) -> tuple[int | None, str]:
    try:
        body = resp.json()
    except ValueError:
        return None, resp.text[:200].strip()
    if isinstance(body, dict):
        return body.get("code"), str(body.get("msg", ""))
    return None, str(body)[:200]


def _retry_after(resp: requests.Response) -> float | None:
    raw = resp.headers.get("Retry-After")
    try:
        return max(0.0, float(raw)) if raw is not None else None
    except ValueError:
        return None
