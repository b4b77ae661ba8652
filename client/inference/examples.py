"""Where SubmitExample and SubmitFeedback put labelled examples: the seam to the example store.

`fedota.client.data.ExampleStore` is the sink the daemon uses: it desensitises text before it
stores anything and never sends data off the device. The server builds each
`fedota.client.data.Example` (which checks its own limits and raises `InvalidExample`, answered
with INVALID_ARGUMENT) and hands it over.
"""

from __future__ import annotations

from typing import Protocol

from fedota.client.data import Example

# Where an example came from, as the store records it.
SOURCE_APP = "app"
SOURCE_FEEDBACK = "feedback"


class ExampleSink(Protocol):
    """Stores an example and returns its id (`fedota.client.data.ExampleStore` is one)."""

    def add(self, example: Example) -> int: ...


__all__ = ["SOURCE_APP", "SOURCE_FEEDBACK", "ExampleSink"]
