"""fedota.ml."""
