"""`crypto-lambda up`: one supervisor for the whole stack (replay exchange or Binance, broker, producer, Spark
streaming consumer, Dagster webserver + daemon, live web page), and its health for `crypto-lambda status`.

``supervisor`` runs and stops the children, ``components`` says what they are, ``health`` reads
``$CRYPTO_LAMBDA_HOME/stack/state.json`` and probes them, ``procs`` holds the /proc plumbing.
"""

from crypto_lambda_app.stack.components import StackOptions, build_components
from crypto_lambda_app.stack.health import component_health, format_components
from crypto_lambda_app.stack.state import state_path

__all__ = ["StackOptions", "build_components", "component_health", "format_components",
           "state_path"]
