"""fedota.server."""
