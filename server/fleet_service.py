"""The Fleet gRPC service: Enroll on the public port, the rest on the mTLS device port."""

from __future__ import annotations

import grpc

from fedota.protos.v1 import device_pb2, fleet_pb2
from fedota.server import device_calls
from fedota.server.auth import peer_certificate_pem
from fedota.server.enrollment import enroll
from fedota.server.runtime import Runtime


class FleetService:
    """Binds fedota.v1.Fleet to the enrollment and device-call logic (see `rpc.add_service`)."""

    def __init__(self, runtime: Runtime) -> None:
        self._runtime = runtime

    def Enroll(
        self, request: fleet_pb2.EnrollRequest, context: grpc.ServicerContext
    ) -> fleet_pb2.EnrollResponse:
        return enroll(self._runtime, request)

    def Heartbeat(
        self, request: fleet_pb2.HeartbeatRequest, context: grpc.ServicerContext
    ) -> fleet_pb2.HeartbeatResponse:
        return device_calls.heartbeat(self._runtime, peer_certificate_pem(context), request)

    def GetDevice(
        self, request: fleet_pb2.GetDeviceRequest, context: grpc.ServicerContext
    ) -> device_pb2.Device:
        return device_calls.own_device(self._runtime, peer_certificate_pem(context))

    def RenewCertificate(
        self, request: fleet_pb2.RenewCertificateRequest, context: grpc.ServicerContext
    ) -> fleet_pb2.RenewCertificateResponse:
        return device_calls.renew_certificate(self._runtime, peer_certificate_pem(context), request)
