"""An aiohttp application on its own event loop in a background thread: how the replay exchange and the live
page run inside tests, the demo and benchmarks, and behind their CLIs (:meth:`serve_until_signal`).

Also the servers' shared safety rules: a non-loopback bind needs an explicit ``--allow-remote``
(:func:`check_bind`), a busy port is one clear :class:`~crypto_lambda.errors.Fault`, and a malformed request
(a too-long URL, a broken header) is logged as one line instead of a traceback per request.
"""

from __future__ import annotations

import asyncio
import errno
import ipaddress
import logging
import os
import signal
import threading
from typing import Self

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError

from crypto_lambda.errors import Fault

log = logging.getLogger(__name__)


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_bind(host: str, allow_remote: bool, what: str) -> None:
    """Refuse a non-loopback bind unless asked for explicitly: our servers have no authentication."""
    if is_loopback(host):
        return
    if not allow_remote:
        raise ValueError(f"--host {host} is not a loopback address; the {what} has no authentication, pass "
                         "--allow-remote to expose it anyway")
    log.warning("%s binds %s with --allow-remote: anyone who can reach this address can use it", what, host)


class _OneLineBadRequests(logging.Filter):
    """aiohttp logs every request it cannot parse with a full traceback ("Error handling request"): a client's
    mistake, answered with a 400, becomes one line naming the problem."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        if isinstance(exc, HttpProcessingError):
            client = record.args[0] if isinstance(record.args, tuple) and record.args else "?"
            record.msg, record.args = "bad request from %s: %s (answered %s)", (client, exc.message, exc.code)
            record.exc_info, record.exc_text, record.levelno, record.levelname = None, None, logging.INFO, "INFO"
        return True


_server_log = logging.getLogger("aiohttp.server")
if not any(isinstance(f, _OneLineBadRequests) for f in _server_log.filters):
    _server_log.addFilter(_OneLineBadRequests())


class BackgroundServer:
    """Subclasses build the app in :meth:`make_app`. Port 0 picks a free port; :attr:`port` holds the real one
    once :meth:`start` returns. ``start`` raises what start-up raised (e.g. a port in use)."""

    name = "http-server"
    join_timeout_s = 30.0

    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        self.host, self.port = host, port
        self._loop: asyncio.AbstractEventLoop | None = None
        self._runner: web.AppRunner | None = None
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None

    def make_app(self) -> web.Application:
        raise NotImplementedError

    @property
    def netloc(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"

    @property
    def url(self) -> str:
        return f"http://{self.netloc}"

    def start(self) -> Self:
        """Start serving; returns once the socket is listening."""
        if self._thread is not None:
            raise RuntimeError(f"{self.name} already started")
        self._ready.clear()
        self._error = None
        self._thread = threading.Thread(target=self._run, name=f"{self.name}-{self.port}", daemon=True)
        self._thread.start()
        self._ready.wait()
        if self._error is not None:
            self._thread.join()
            self._thread = None
            error, self._error = self._error, None
            if isinstance(error, OSError) and error.errno in (errno.EADDRINUSE, errno.EADDRNOTAVAIL, errno.EACCES):
                raise Fault(f"{self.name} cannot listen on {self.netloc}: {os.strerror(error.errno)}; choose another "
                            "--port (or stop what uses it)") from error
            raise error
        return self

    def _run(self) -> None:
        loop = self._loop = asyncio.new_event_loop()
        asyncio.set_event_loop(loop)
        try:
            loop.run_until_complete(self._startup())
        except BaseException as exc:  # noqa: BLE001 - handed to start()
            self._error = exc
            self._ready.set()
            loop.close()
            return
        self._ready.set()
        try:
            loop.run_forever()
        finally:
            loop.run_until_complete(self._runner.cleanup())  # type: ignore[union-attr]
            loop.close()

    async def _startup(self) -> None:
        self._runner = web.AppRunner(self.make_app(), access_log=None, shutdown_timeout=2.0)
        await self._runner.setup()
        await web.TCPSite(self._runner, self.host, self.port).start()
        self.port = int(self._runner.addresses[0][1])

    def serve_until_signal(self) -> None:
        """Block the calling (main) thread until Ctrl-C or SIGTERM while the server runs: a CLI's foreground."""
        stop = threading.Event()
        previous = signal.signal(signal.SIGTERM, lambda *_: stop.set())
        try:
            while not stop.wait(0.5):  # short waits keep Ctrl-C responsive in the main thread
                pass
        except KeyboardInterrupt:
            pass
        finally:
            signal.signal(signal.SIGTERM, previous)

    def stop(self) -> None:
        """Stop serving and join the thread (idempotent)."""
        if self._thread is None or self._loop is None:
            return
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=self.join_timeout_s)
        self._thread = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
