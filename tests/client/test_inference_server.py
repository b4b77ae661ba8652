"""The server's socket, addresses, bounds and shutdown."""

from __future__ import annotations

import os
import socket
import stat
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import grpc
import numpy as np
import pytest
from inference_harness import inference_threads, running, short_tmp_dir, wait_for
from inference_models import INPUT_SIZE, ReferenceModel

from fedota.client.inference import (
    MAX_SOCKET_PATH,
    InferenceConfig,
    InferenceServer,
    SocketInUse,
    default_socket_path,
    serve,
)
from fedota.protos.v1 import inference_pb2 as pb
from fedota.protos.v1 import inference_pb2_grpc as pb_grpc

pytestmark = pytest.mark.timeout(60)

ROW = np.linspace(-1, 1, INPUT_SIZE, dtype=np.float32)


def _predict(target: str) -> pb.PredictResponse:
    # A connection of its own: gRPC would otherwise reuse one another channel holds open.
    options = [("grpc.use_local_subchannel_pool", 1)]
    with grpc.insecure_channel(target, options=options) as channel:
        return pb_grpc.LocalInferenceStub(channel).Predict(
            pb.PredictRequest(features=ROW), timeout=10
        )


def test_the_socket_is_private_to_the_devices_user_and_removed_on_stop() -> None:
    with running(ReferenceModel("v1", seed=1)) as served:
        mode = os.stat(served.socket_path).st_mode
        assert stat.S_ISSOCK(mode)
        assert stat.S_IMODE(mode) == 0o600
        assert served.server.unix_target == f"unix:{served.socket_path}"
        assert served.stub.Predict(pb.PredictRequest(features=ROW)).model_version == "v1"
    assert not served.socket_path.exists()


def test_serve_listens_on_a_socket_under_the_state_directory_and_on_loopback() -> None:
    with short_tmp_dir() as state:
        path = default_socket_path(state / "dev")
        server = serve(ReferenceModel("v1", seed=1), socket_path=path, tcp_port=0)
        try:
            assert path == state / "dev" / "inference.sock"
            assert stat.S_IMODE(os.stat(path.parent).st_mode) == 0o700  # created private
            assert server.tcp_target is not None and server.tcp_target.startswith("127.0.0.1:")
            assert _predict(server.tcp_target).model_version == "v1"
            assert _predict(f"unix:{path}").model_version == "v1"
        finally:
            assert server.stop(grace=1)
        with pytest.raises(RuntimeError, match="starts once"):
            server.start()


def test_a_live_server_keeps_its_socket() -> None:
    with running(ReferenceModel("v1", seed=1)) as served:
        before = inference_threads()
        second = InferenceServer(ReferenceModel("v2", seed=2), socket_path=served.socket_path)
        with pytest.raises(SocketInUse, match="another inference server is listening on"):
            second.start()
        assert inference_threads() == before  # the refused server left nothing running
        assert served.stub.Predict(pb.PredictRequest(features=ROW)).model_version == "v1"


def test_a_dead_servers_socket_is_replaced() -> None:
    with short_tmp_dir() as directory:
        path = directory / "s.sock"
        dead = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        dead.bind(str(path))
        dead.close()  # the file stays, nobody listens
        with InferenceServer(ReferenceModel("v1", seed=1), socket_path=path) as server:
            assert _predict(server.unix_target or "").model_version == "v1"


def test_a_path_that_is_not_a_socket_is_left_alone() -> None:
    with short_tmp_dir() as directory:
        path = directory / "notes.txt"
        path.write_text("precious")
        server = InferenceServer(ReferenceModel("v1", seed=1), socket_path=path)
        with pytest.raises(SocketInUse, match="exists and is not a socket"):
            server.start()
        assert path.read_text() == "precious"
    assert not inference_threads()


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({}, "needs a socket_path, a tcp_port or both"),
        (
            {"socket_path": Path("/tmp") / ("x" * MAX_SOCKET_PATH)},
            f"over the system limit of {MAX_SOCKET_PATH}",
        ),
        ({"tcp_port": 0, "tcp_host": "0.0.0.0"}, "loopback only, not on '0.0.0.0'"),
        ({"tcp_port": 0, "tcp_host": "192.168.1.7"}, "loopback only"),
        ({"tcp_port": 0, "tcp_host": "example.com"}, "loopback only"),
    ],
    ids=["no address", "long path", "any address", "lan address", "host name"],
)
def test_addresses_that_cannot_be_private_are_refused(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        InferenceServer(ReferenceModel("v1", seed=1), **kwargs)


def test_a_full_predict_queue_answers_resource_exhausted_at_once() -> None:
    model = ReferenceModel("v1", seed=1)
    config = InferenceConfig(max_batch=1, max_wait=0, max_queue=2)
    with running(model, config=config) as served, ThreadPoolExecutor(3) as pool:
        model.predict_gate.close()
        calls = [pool.submit(served.stub.Predict, pb.PredictRequest(features=ROW))]
        assert model.predict_gate.wait_arrivals(1)
        calls += [pool.submit(served.stub.Predict, pb.PredictRequest(features=ROW)) for _ in "ab"]
        wait_for(lambda: served.server.queued()["predict"] == 2)

        with pytest.raises(grpc.RpcError) as full:
            served.stub.Predict(pb.PredictRequest(features=ROW), timeout=10)
        assert full.value.code() is grpc.StatusCode.RESOURCE_EXHAUSTED
        assert "predict queue is full (2 requests waiting); retry later" in full.value.details()

        model.predict_gate.open()
        assert [c.result(30).model_version for c in calls] == ["v1"] * 3
    assert not inference_threads()


def test_calls_beyond_the_concurrency_bound_are_refused_by_grpc() -> None:
    model = ReferenceModel("v1", seed=1)
    config = InferenceConfig(max_batch=1, max_wait=0, max_workers=2, max_concurrent_rpcs=2)
    with running(model, config=config) as served, ThreadPoolExecutor(2) as pool:
        model.predict_gate.close()
        calls = [pool.submit(served.stub.Predict, pb.PredictRequest(features=ROW)) for _ in "ab"]
        wait_for(lambda: model.predict_gate.arrived == 1 and served.server.queued()["predict"] == 1)

        with pytest.raises(grpc.RpcError) as refused:
            served.stub.Predict(pb.PredictRequest(features=ROW), timeout=10)
        assert refused.value.code() is grpc.StatusCode.RESOURCE_EXHAUSTED

        model.predict_gate.open()
        assert [c.result(30).model_version for c in calls] == ["v1"] * 2


def test_stop_lets_a_call_in_flight_finish_and_refuses_new_ones() -> None:
    model = ReferenceModel("v1", seed=1)
    with short_tmp_dir() as directory, ThreadPoolExecutor(2) as pool:
        server = serve(model, socket_path=directory / "s.sock")
        target = server.unix_target or ""
        channel = grpc.insecure_channel(target)
        try:
            model.predict_gate.close()
            stub = pb_grpc.LocalInferenceStub(channel)
            in_flight = pool.submit(stub.Predict, pb.PredictRequest(features=ROW), timeout=30)
            assert model.predict_gate.wait_arrivals(1)

            stopping = pool.submit(server.stop, 10.0)
            wait_for(lambda: not (directory / "s.sock").exists())  # no longer listening
            with pytest.raises(grpc.RpcError) as refused:
                _predict(target)
            assert refused.value.code() is grpc.StatusCode.UNAVAILABLE

            model.predict_gate.open()
            assert in_flight.result(30).model_version == "v1"
            assert stopping.result(30) is True
        finally:
            model.predict_gate.open()
            channel.close()
            server.stop(grace=0)
    assert model.closed == 1
    assert not inference_threads()
