"""fedota.storage."""
