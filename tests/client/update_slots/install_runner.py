"""Run `install` or `recover` in a process of its own, pausing at one step for a test to kill -9.

    python install_runner.py install STATE --target JSON --file FILE [--base HASH] \\
        --pause-at STEP --marker PATH
    python install_runner.py recover STATE --pause-at STEP --marker PATH

The pause uses the `on_step` hook every install exposes (no test switch in the product): the
first time the run passes `--pause-at`, it creates `--marker` and sleeps; the test waits for the
marker, looks at the state directory, and sends SIGKILL. A run that is never killed exits 3
after `--max-pause` seconds, so nothing outlives a broken test; one that never reaches the step
finishes and prints its result (exit 0), which the test reports as a failure.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from fedota.client.update.install import Step, Update, install, recover
from fedota.client.update.slots import target_from_record


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("command", choices=["install", "recover"])
    parser.add_argument("state", type=Path)
    parser.add_argument("--target", help="the signed target, as JSON")
    parser.add_argument("--file", type=Path)
    parser.add_argument("--base", default=None)
    parser.add_argument("--pause-at", required=True, choices=[step.value for step in Step])
    parser.add_argument("--marker", type=Path, required=True)
    parser.add_argument("--max-pause", type=float, default=60.0)
    args = parser.parse_args(argv)

    def on_step(step: Step) -> None:
        if step.value != args.pause_at:
            return
        args.marker.write_text(step.value)
        time.sleep(args.max_pause)
        sys.exit(3)

    if args.command == "install":
        target = target_from_record(json.loads(args.target))
        result = install(args.state, Update(target, args.file, args.base), on_step=on_step)
    else:
        result = recover(args.state, on_step=on_step)
    print(result.status.value if result is not None else "nothing to recover")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
