"""fedota's ClientApp (plumbing layer): answers a train message by adding one to every array.

It records each task in `<state-dir>/flower-tasks.log` (the SuperNode's `--node-config
state-dir=...`), so a device can show which runs it took part in. Local fine-tuning on the
device's model and data replaces the body of `train` in a later layer; the component name stays.
"""

from __future__ import annotations

import time
from pathlib import Path

from flwr.app import ArrayRecord, Context, Message, MetricRecord, RecordDict
from flwr.clientapp import ClientApp

TASK_LOG = "flower-tasks.log"

app = ClientApp()


def _record(context: Context, message: Message) -> None:
    state_dir = context.node_config.get("state-dir")
    if not isinstance(state_dir, str) or not state_dir:
        return
    line = f"{time.time():.3f} run={message.metadata.run_id} {message.metadata.message_type}\n"
    with open(Path(state_dir) / TASK_LOG, "a", encoding="utf-8") as handle:
        handle.write(line)


@app.train()
def train(message: Message, context: Context) -> Message:
    """Return the received arrays plus one, weighted as one example."""
    arrays = message.content["arrays"]
    assert isinstance(arrays, ArrayRecord)
    updated = ArrayRecord([a + 1 for a in arrays.to_numpy_ndarrays()])
    _record(context, message)
    content = RecordDict({"arrays": updated, "metrics": MetricRecord({"num-examples": 1})})
    return Message(content=content, reply_to=message)
