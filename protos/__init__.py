"""Protocol buffers and gRPC stubs of fedota's APIs (proto package `fedota.v1`).

The sources live in `fedota/v1/*.proto` beside this file; the generated modules import as
`fedota.protos.v1.<name>_pb2` and `..._pb2_grpc`. Regenerate with `make protos`.
"""
