"""Generated gRPC and protobuf code for proto package fedota.v1."""
