"""``imsim serve``: a planner's workbench in the browser (Solara), local and offline.

The page (:mod:`imsim.output.web.app`) is thin over the library: its logic
(:mod:`imsim.output.web.logic`) builds a scenario mapping, validates it with the command line's
:func:`~imsim.config.scenario.parse_scenario` and runs the expected engine. This module only
parses the command and starts the server; Solara is imported when the server starts.
"""
from __future__ import annotations

import argparse
import os
import socket
import sys
import textwrap
from pathlib import Path

from imsim.core.errors import InputError

__all__ = ["add_parser", "cmd_serve", "serve"]


def add_parser(sub) -> argparse.ArgumentParser:
    """Add ``imsim serve`` to the command line's subparsers."""
    p = sub.add_parser(
        "serve", help="a planner's workbench in the browser (local, offline)",
        description=textwrap.fill(
                    "Start a local web application: pick states (list or tile map), "
                    "strategies with coverage (a number or a ramp), reach by race and program "
                    "options; see deaths averted (expected engine at point values, updated as "
                    "you type; uncertainty draws in the background with progress), IMR by race "
                    "before and after, the NH black - NH white gap, attribution by strategy and "
                    "a by-state map and table; the collaborative's coverage trajectories. Save "
                    "and load scenario YAML (the command line's validation and one-line "
                    "messages), save run folders, run recommend for the page's states and open "
                    "existing run and recommend folders (reports, briefs). The server reads and "
                    "writes only inside --results and needs no internet (install with: pip "
                    "install 'imsim[web]').", 92),
        epilog="examples:\n  imsim serve                      # http://127.0.0.1:8765\n"
               "  imsim serve --port 9000 --results results/workbench\n"
               "  imsim serve --host 0.0.0.0       # reachable from other machines (no login!)",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--port", type=int, default=8765, help="port to listen on (default 8765)")
    p.add_argument("--host", default="127.0.0.1",
                   help="address to listen on (default 127.0.0.1: this machine only)")
    p.add_argument("--results", default="results",
                   help="the folder the workbench saves scenarios and run folders to and opens "
                        "run folders from; nothing outside it is read or written (default "
                        "results, created if missing)")
    return p


def cmd_serve(args) -> int:
    """Run ``imsim serve``."""
    if not 1 <= args.port <= 65535:
        raise InputError(f"--port {args.port} is out of range; allowed: 1 to 65535")
    serve(host=args.host, port=args.port, results=args.results)
    return 0


def serve(host: str = "127.0.0.1", port: int = 8765, results: str | os.PathLike = "results"):
    """Start the workbench server (blocks until interrupted).

    Raises
    ------
    InputError
        When Solara is not installed, the results folder cannot be made, or the port is taken.
    """
    try:
        import solara  # noqa: F401
    except ImportError:
        raise InputError("imsim serve needs the web extra; install it with: "
                         "pip install 'imsim[web]' (solara, solara-assets)") from None
    root = Path(results)
    if root.exists() and not root.is_dir():
        raise InputError(f"--results {results}: is a file; allowed: a folder")
    root.mkdir(parents=True, exist_ok=True)
    root = root.resolve()
    with socket.socket() as s:               # a taken port: one line, not a traceback
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)   # as uvicorn binds
        try:
            s.bind((host, port))
        except OSError as exc:
            raise InputError(f"--host {host} --port {port}: cannot listen there "
                             f"({exc.strerror or exc}); allowed: a free port") from None
    state = root / ".workbench"              # Solara's own small files stay inside --results
    env = {
        "IMSIM_SERVE_RESULTS": str(root),
        "SOLARA_APP": "imsim.output.web.app",
        "SOLARA_TELEMETRY_MIXPANEL_ENABLE": "False",   # no calls home
        "SOLARA_TELEMETRY_SERVER_USER_ID": "imsim",
        "SOLARA_HOME": str(state),
        "SOLARA_CHECK_VERSION": "False",
        "SOLARA_THEME_LOADER": "plain",
        "SERVER_NAME": host, "SERVER_PORT": str(port),
    }
    os.environ.update(env)
    import uvicorn

    url = f"http://{host}:{port}"
    print(f"imsim workbench at {url} (results folder {root}); Ctrl-C stops it", file=sys.stderr,
          flush=True)
    uvicorn.run("solara.server.starlette:app", host=host, port=port, log_level="warning",
                ws_max_size=64 * 1024 * 1024)
