"""The live web page: 1-minute candles and the provisional daily bar per symbol from the streaming output.

``build_app(settings)`` is the aiohttp application (``crypto-lambda web`` serves it); ``WebServer`` runs it
in a background thread for tests and embedding.
"""

from crypto_lambda_app.web.app import WebServer, build_app

__all__ = ["WebServer", "build_app"]
