"""Small fake daemons: `sshd -De` (MPI workers) sleeps until it is killed."""
from __future__ import annotations

import signal
import sys
import time


def sshd(argv: list[str]) -> int:
    """Foreground sshd: prints what OpenSSH logs with -e and waits for SIGTERM."""
    for arg in argv:
        if arg.startswith("-") and set(arg[1:]) - set("De46dqtT") and arg not in ("-f", "-p", "-o"):
            print(f"sshd: illegal option -- {arg[1:2]}", file=sys.stderr)
            return 1
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    print("Server listening on 0.0.0.0 port 22.", file=sys.stderr, flush=True)
    print("Server listening on :: port 22.", file=sys.stderr, flush=True)
    while True:
        time.sleep(3600)
