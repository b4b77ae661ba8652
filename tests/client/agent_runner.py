"""Run the update agent as a device daemon does at start (`recover`, then one `run_once`), in a
process of its own, so that a test can kill it with SIGKILL at any point.

    python agent_runner.py STATE --port PORT --certs DIR [--pause-at STEP --marker PATH]

`--certs` holds key.pem, cert.pem and ca.pem (the device's mTLS identity). With `--pause-at`, the
first time the install passes that step (the `on_step` hook every install exposes), the runner
creates `--marker` and sleeps for the test to kill it; a runner never killed exits 3 after
`--max-pause` seconds. Otherwise it prints how the pass ended: an install status or "none".
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from fedota.client.config import DaemonConfig
from fedota.client.endpoint import Endpoint
from fedota.client.identity import Credentials
from fedota.client.transport import FleetConnection
from fedota.client.update.agent import UpdateAgent
from fedota.client.update.install import Step


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("state", type=Path)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--certs", type=Path, required=True)
    parser.add_argument("--pause-at", choices=[step.value for step in Step])
    parser.add_argument("--marker", type=Path)
    parser.add_argument("--max-pause", type=float, default=60.0)
    args = parser.parse_args(argv)

    def on_step(step: Step) -> None:
        if step.value != args.pause_at:
            return
        args.marker.write_text(step.value)
        time.sleep(args.max_pause)
        sys.exit(3)

    credentials = Credentials.from_pem(
        (args.certs / "key.pem").read_bytes(),
        (args.certs / "cert.pem").read_bytes(),
        (args.certs / "ca.pem").read_bytes(),
    )
    endpoint = Endpoint("127.0.0.1", args.port)
    connection = FleetConnection(endpoint, credentials.ca_pem, DaemonConfig(rpc_timeout=10.0))
    connection.use_credentials(endpoint, credentials)
    try:
        agent = UpdateAgent(args.state, args.state / "update", connection, on_step=on_step)
        agent.recover()
        result = agent.run_once()
    finally:
        connection.close()
    print(result.status.value if result is not None else "none")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
