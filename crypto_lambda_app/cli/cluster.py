"""`cluster up|down|status`: a Spark standalone master and workers on this box (crypto_lambda_app.stack.cluster).

Every Spark entry point (`crypto-lambda backfill`, `stream consume`, Dagster runs) uses the cluster once
SPARK_MASTER=spark://127.0.0.1:PORT is exported; `up` prints that line.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys

from crypto_lambda.config import load_settings

log = logging.getLogger("crypto_lambda_app.cluster")


def register(sub: argparse._SubParsersAction) -> None:
    cluster = sub.add_parser(
        "cluster", help="a Spark standalone cluster on this box: up, down, status",
        description="Start, stop or inspect a Spark standalone master and workers from PySpark's own "
                    "distribution (spark-class), bound to 127.0.0.1, with logs, work and scratch folders under "
                    "$CRYPTO_LAMBDA_HOME/spark-cluster/. Export the SPARK_MASTER line `up` prints and every "
                    "Spark job of the project runs on the cluster.")
    cmds = cluster.add_subparsers(dest="cluster_command", required=True, metavar="CLUSTER_COMMAND")

    up = cmds.add_parser("up", help="start a master and N workers, wait until they are ALIVE",
                         description="Start the master, then the workers, detached (they outlive this command); "
                                     "return once the master lists every worker ALIVE and print "
                                     "SPARK_MASTER=spark://HOST:PORT. State in "
                                     "$CRYPTO_LAMBDA_HOME/spark-cluster/state.json.")
    up.add_argument("--workers", type=int, default=2, help="number of workers (default 2)")
    up.add_argument("--worker-cores", type=int, default=1, help="cores each worker offers (default 1)")
    up.add_argument("--worker-memory", default="1g", help="memory each worker offers, e.g. 1g (default 1g)")
    up.add_argument("--port", type=int, default=7077, help="master port (default 7077; 0 = any free port)")
    up.add_argument("--webui-port", type=int, default=8080,
                    help="master web UI port, also its /json/ status (default 8080; 0 = any free port)")
    up.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    up.add_argument("--allow-remote", action="store_true",
                    help="allow a non-loopback --host (the cluster has no authentication)")
    up.add_argument("--daemon-memory", default="256m", help="heap of the master and worker daemons (default 256m)")
    up.add_argument("--ready-timeout", type=float, default=120.0,
                    help="seconds to wait for every worker to be ALIVE (default 120)")
    up.set_defaults(func=cmd_up)

    down = cmds.add_parser("down", help="stop the workers (and their executors), then the master",
                           description="SIGTERM the workers and everything they launched, then the master; "
                                       "SIGKILL whatever is left after --grace seconds.")
    down.add_argument("--grace", type=float, default=10.0, help="seconds before SIGKILL (default 10)")
    down.set_defaults(func=cmd_down)

    status = cmds.add_parser("status", help="master URL, workers ALIVE/DEAD, apps, memory of each process",
                             description="What the master reports (workers with state, cores and memory; "
                                         "running applications) and the RSS of the master, each worker and "
                                         "the executors each worker launched.")
    status.add_argument("--json", action="store_true", help="machine-readable output")
    status.set_defaults(func=cmd_status)


def cmd_up(args: argparse.Namespace) -> int:
    from crypto_lambda_app.stack.cluster import ClusterOptions, start_cluster
    from crypto_lambda_http import check_bind

    check_bind(args.host, args.allow_remote, "Spark cluster")
    for name in ("port", "webui_port"):
        if not 0 <= getattr(args, name) <= 65535:
            raise ValueError(f"--{name.replace('_', '-')} {getattr(args, name)} is not a port number")
    options = ClusterOptions(workers=args.workers, worker_cores=args.worker_cores, worker_memory=args.worker_memory,
                             port=args.port, webui_port=args.webui_port, host=args.host,
                             daemon_memory=args.daemon_memory, ready_timeout=args.ready_timeout)
    state = start_cluster(load_settings(), options, progress=log.info)
    log.info("Spark cluster up in %.1f s: %d worker(s) ALIVE, web UI %s; stop it with `crypto-lambda cluster "
             "down`", state["up_seconds"], args.workers, state["webui_url"])
    print(f"SPARK_MASTER={state['master_url']}", flush=True)
    return 0


def cmd_down(args: argparse.Namespace) -> int:
    from crypto_lambda_app.stack.cluster import stop_cluster

    pids = stop_cluster(load_settings(), grace=args.grace)
    print(f"Spark cluster stopped ({len(pids)} process(es))" if pids else "Spark cluster: nothing was running")
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    from crypto_lambda_app.stack.cluster import cluster_status, format_status

    status = cluster_status(load_settings())
    print(json.dumps(status, indent=2) if args.json else format_status(status))
    sys.stdout.flush()
    return 0 if status["running"] else 3
