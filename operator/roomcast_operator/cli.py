"""``roomcast-operator``: run the operator with the current kubeconfig or in-cluster."""

from __future__ import annotations

import argparse
import asyncio
import logging

import kopf

from .settings import OperatorSettings


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="roomcast-operator", description=__doc__)
    parser.add_argument(
        "--namespace",
        "-n",
        default=None,
        help="watch one namespace (default: ROOMCAST_OPERATOR_NAMESPACE or all)",
    )
    parser.add_argument(
        "--liveness",
        default=None,
        help="serve kopf's liveness probe here, e.g. http://0.0.0.0:8080/healthz",
    )
    parser.add_argument(
        "--metrics-port",
        type=int,
        default=0,
        help="serve the operator's Prometheus metrics on this port at /metrics (0: off)",
    )
    parser.add_argument("--verbose", "-v", action="store_true")
    args = parser.parse_args(argv)
    try:
        settings = OperatorSettings.from_environ()
    except ValueError as error:
        parser.error(str(error))
    namespace = args.namespace if args.namespace is not None else settings.namespace
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    if not args.verbose:
        logging.getLogger("kopf.objects").setLevel(logging.WARNING)
    if args.metrics_port:
        from .metrics import serve

        serve(args.metrics_port)
    from . import handlers  # registers the kopf handlers

    del handlers
    stop_flag = asyncio.Event()
    memo = kopf.Memo(stop_flag=stop_flag)

    async def run() -> None:
        # kopf's own peering is off: leader election is the operator's (a Lease).
        await kopf.operator(
            standalone=True,
            liveness_endpoint=args.liveness,
            clusterwide=not namespace,
            namespaces=[namespace] if namespace else (),
            stop_flag=stop_flag,
            memo=memo,
        )

    asyncio.run(run())
    if memo.get("lost_leadership"):
        logging.getLogger("roomcast_operator").error("exiting: leadership lost")
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
