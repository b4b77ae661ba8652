"""Devices take updates: the TUF repository as files, over gRPC (Fetch) and plain HTTP."""
