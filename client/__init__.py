"""fedota.client."""
