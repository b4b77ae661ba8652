"""The `fedota` command line."""
