"""``python -m infra.erp_sandbox --port 8765 --db .r2r/erp.sqlite``: run the sandbox in the foreground."""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
from pathlib import Path

from .auth import SandboxCredentials
from .server import ErpSandbox


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m infra.erp_sandbox", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1", help="loopback address to bind (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8765, help="port (0 = any free port)")
    parser.add_argument("--db", type=Path, default=Path(".r2r/erp.sqlite"), help="SQLite file for records")
    parser.add_argument("--account-id", default="TSTDRV1234567", help="NetSuite account id (OAuth realm)")
    parser.add_argument(
        "--print-secret", action="store_true", help="also print the ErpCredentials secret JSON to use"
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")

    # Before the address is printed: whoever reads it may stop the sandbox at once, and a SIGTERM that
    # came before the handler would end the process as killed (-15) instead of stopping it cleanly.
    stopped = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stopped.set())
    sandbox = ErpSandbox(
        args.db, host=args.host, port=args.port, account_id=args.account_id, credentials=SandboxCredentials()
    )
    url = sandbox.start()
    print(f"ERP sandbox on {url} (records in {args.db}); Ctrl-C stops it", flush=True)
    if args.print_secret:
        print(sandbox.secret_json(), flush=True)

    try:
        stopped.wait()
    except KeyboardInterrupt:
        pass
    finally:
        sandbox.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
