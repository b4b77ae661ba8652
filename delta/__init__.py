"""fedota.delta."""
