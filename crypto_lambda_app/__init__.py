"""The application layer, at the top: the `crypto-lambda` CLI, the demo, the stack supervisor (`up`) and the
live web page. It may import every layer below it (`crypto_assets`, `streaming_service`, `crypto_lambda`) and
the replay exchange; nothing imports it (import-linter contracts in pyproject.toml, run by `make lint`).
"""
