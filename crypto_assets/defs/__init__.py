"""The code location's definitions, one package per domain (batch, speed, serving, forecast, maintenance),
each holding its assets, checks, jobs, schedules and sensors and exposing ``build_defs(settings) ->
dg.Definitions``; ``crypto_assets.definitions`` merges them. Domains do not import each other (import-linter
contract): they meet through asset keys, which are the lake's dataset names in ``crypto_lambda``, and through
``crypto_assets.lib``. Assets stay thin: the computations live in the core library ``crypto_lambda``."""
