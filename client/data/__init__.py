"""fedota.client.data: the device's local data loop (desensitiser and example store).

Apps submit labelled examples through the local API; text is desensitised (`Desensitizer`)
before the `ExampleStore` writes it to a private SQLite file bounded in size and age, and the
local training loop reads it back. Nothing here opens a socket: the data never leaves the device.
"""

from fedota.client.data.desensitize import KINDS, PLACEHOLDERS, Desensitizer, Scrubbed
from fedota.client.data.errors import InvalidExample, StoreError
from fedota.client.data.example import LIMITS, Example, ExampleLimits, Kind, StoredExample
from fedota.client.data.store import STORE_FILE, ExampleStore, StoreStats

__all__ = [
    "KINDS",
    "LIMITS",
    "PLACEHOLDERS",
    "STORE_FILE",
    "Desensitizer",
    "Example",
    "ExampleLimits",
    "ExampleStore",
    "InvalidExample",
    "Kind",
    "Scrubbed",
    "StoreError",
    "StoreStats",
    "StoredExample",
]
