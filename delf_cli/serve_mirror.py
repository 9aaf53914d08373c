"""`delf serve_mirror --root=DIR --port=N`: serve a GLDv2-layout folder over HTTP."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from delf_cli.flags import add_flag, non_negative_int
from delf_core.gldv2.mini_config import DEFAULT_OUTPUT_DIR
from delf_core.gldv2.mirror import DEFAULT_HOST, MirrorServer


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_flag(parser, "root", DEFAULT_OUTPUT_DIR, "folder laid out like the GLDv2 bucket")
    add_flag(parser, "host", DEFAULT_HOST, "address to listen on")
    add_flag(parser, "port", 8000, "port to listen on; 0 picks a free one", type=non_negative_int)
    add_flag(
        parser,
        "rate_limit_mb",
        None,
        "per-connection limit in MB/s, to act like a remote bucket",
        type=float,
    )


def run(args: argparse.Namespace) -> int:
    if not Path(args.root).is_dir():
        print(f"delf serve_mirror: error: --root={args.root} is not a folder", file=sys.stderr)
        return 2
    try:
        server = MirrorServer(args.root, args.host, args.port, args.rate_limit_mb)
    except OSError as error:
        print(
            f"delf serve_mirror: error: cannot listen on {args.host}:{args.port}: {error}",
            file=sys.stderr,
        )
        return 2
    # The URL goes to stdout, flushed, so scripts can wait for it and read the port.
    print(f"serving {args.root} at {server.url}", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.httpd.server_close()
    return 0
