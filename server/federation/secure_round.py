"""One secure round on Flower's grid: SecAgg+ through Flower's own workflow stages.

Flower 1.42 has SecAgg+ only in its legacy workflow API, so this module adapts: a one-round
legacy `Strategy` whose `configure_fit` hands each selected node its fedota train content (as
`FitIns`) and whose `aggregate_fit` captures the unmasked aggregate, a `LegacyContext` around
it, and Flower's `SecAggPlusWorkflow` stage methods called one by one, so that between them
the round can leave out a device revoked meanwhile and, after them, say which stage each device
dropped at. Flower's grid is wrapped so that each exchange polls every second (its own
send_and_receive sleeps 3 s) and is recorded.

    result = run_secure_round(grid, run_id, contents, params, timeout, still_eligible)
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, cast

import numpy as np
from flwr.app import ArrayRecord, ConfigRecord, Context, Message, RecordDict
from flwr.common import (
    FitIns,
    FitRes,
    Parameters,
    Scalar,
    ndarrays_to_parameters,
    parameters_to_ndarrays,
)
from flwr.common.secure_aggregation.secaggplus_constants import RECORD_KEY_CONFIGS, Key
from flwr.server.client_manager import ClientManager
from flwr.server.client_proxy import ClientProxy
from flwr.server.compat.grid_client_proxy import GridClientProxy
from flwr.server.compat.legacy_context import LegacyContext
from flwr.server.strategy import Strategy
from flwr.server.workflow.constant import MAIN_CONFIGS_RECORD, MAIN_PARAMS_RECORD
from flwr.server.workflow.constant import Key as WorkflowKey
from flwr.server.workflow.secure_aggregation.secaggplus_workflow import (
    SecAggPlusWorkflow,
    WorkflowState,
)
from flwr.serverapp import Grid

from fedota.server.campaigns.secure import (
    COLLECT,
    STAGES,
    NodeOutcome,
    SecureParams,
    SecureResult,
)

log = logging.getLogger(__name__)

ARRAYS_KEY, CONFIG_KEY, METRICS_KEY = "arrays", "config", "metrics"


def send_and_receive(
    grid: Grid, messages: list[Message], timeout: float, poll: float
) -> list[Message]:
    """Push the messages, then pull replies every `poll` seconds until all came or `timeout`."""
    if not messages:
        return []
    pending = {i for i in grid.push_messages(messages) if i}
    replies: list[Message] = []
    deadline = time.monotonic() + timeout
    while pending and time.monotonic() < deadline:
        for message in grid.pull_messages(pending):
            pending.discard(message.metadata.reply_to_message_id)
            replies.append(message)
        if pending:
            time.sleep(poll)
    return replies


@dataclass
class _Exchange:
    """One SecAgg+ stage as the grid saw it: who was asked, who answered what."""

    asked: set[int]
    errors: dict[int, str] = field(default_factory=dict)
    answered: set[int] = field(default_factory=set)
    masked_bytes: dict[int, int] = field(default_factory=dict)


class _RecordingGrid:
    """What SecAggPlusWorkflow uses of a grid (`send_and_receive`), recorded per call."""

    def __init__(self, grid: Grid, timeout: float, poll: float) -> None:
        self._grid = grid
        self._timeout = timeout
        self._poll = poll
        self.exchanges: list[_Exchange] = []

    def send_and_receive(
        self, messages: Iterable[Message], *, timeout: float | None = None
    ) -> list[Message]:
        batch = list(messages)
        exchange = _Exchange({m.metadata.dst_node_id for m in batch})
        self.exchanges.append(exchange)
        wait = self._timeout if timeout is None else timeout
        replies = send_and_receive(self._grid, batch, wait, self._poll)
        for reply in replies:
            node = reply.metadata.src_node_id
            if reply.has_error():
                exchange.errors[node] = reply.error.reason or f"error code {reply.error.code}"
                continue
            exchange.answered.add(node)
            configs = reply.content.config_records.get(RECORD_KEY_CONFIGS, ConfigRecord())
            masked = configs.get(Key.MASKED_PARAMETERS)
            if isinstance(masked, list):
                exchange.masked_bytes[node] = sum(len(b) for b in masked if isinstance(b, bytes))
        return replies


class _OneRound(Strategy):
    """A legacy strategy for one SecAgg+ round: fedota's contents out, the aggregate back."""

    def __init__(self, fitins: Mapping[int, FitIns], proxies: Mapping[int, ClientProxy]) -> None:
        self._fitins = fitins
        self._proxies = proxies
        self.aggregate: Parameters | None = None
        self.results: list[tuple[ClientProxy, FitRes]] = []

    def configure_fit(
        self, server_round: int, parameters: Parameters, client_manager: ClientManager
    ) -> list[tuple[ClientProxy, FitIns]]:
        return [(self._proxies[node], fitins) for node, fitins in self._fitins.items()]

    def aggregate_fit(
        self,
        server_round: int,
        results: list[tuple[ClientProxy, FitRes]],
        failures: list[tuple[ClientProxy, FitRes] | BaseException],
    ) -> tuple[Parameters | None, dict[str, Scalar]]:
        # SecAgg+ gives every result the same (aggregate) parameters.
        self.results = list(results)
        self.aggregate = results[0][1].parameters if results else None
        return self.aggregate, {}

    def initialize_parameters(self, client_manager: ClientManager) -> Parameters | None:
        return None

    def configure_evaluate(self, *args: Any, **kwargs: Any) -> list[Any]:
        return []

    def aggregate_evaluate(self, *args: Any, **kwargs: Any) -> tuple[None, dict[str, Scalar]]:
        return None, {}

    def evaluate(self, *args: Any, **kwargs: Any) -> None:
        return None


def run_secure_round(
    grid: Grid,
    run_id: int,
    contents: Mapping[int, RecordDict],
    params: SecureParams,
    timeout: float,
    still_eligible: Callable[[], set[int]],
    poll: float = 1.0,
) -> SecureResult:
    """SecAgg+ with the nodes of `contents` (fedota train contents: "arrays" and "config");
    `timeout` bounds each of its four exchanges. Never raises for what devices do: a stopped
    protocol is a result with `failure` set."""
    names = _names(contents)
    proxies = {node: GridClientProxy(node, grid, run_id) for node in contents}
    strategy = _OneRound({n: _fitins(c) for n, c in contents.items()}, proxies)
    context = _legacy_context(run_id, strategy)
    recording = _RecordingGrid(grid, timeout, poll)
    workflow = SecAggPlusWorkflow(
        num_shares=1.0,  # every selected device holds a share of every other's secrets
        reconstruction_threshold=params.threshold,
        max_weight=float(params.weight_cap),
        clipping_range=params.bound,
        quantization_range=params.quantization_range,
        modulus_range=params.modulus,
        timeout=timeout,
    )
    state = WorkflowState()
    revoked: set[int] = set()
    stages = (
        workflow.setup_stage,
        workflow.share_keys_stage,
        workflow.collect_masked_vectors_stage,
        workflow.unmask_stage,
    )
    failure = ""
    for index, stage in enumerate(stages):
        if index == COLLECT:
            revoked = state.active_node_ids - still_eligible()
            state.active_node_ids -= revoked
        before = len(state.active_node_ids)
        try:
            done = stage(cast(Grid, recording), context, state)
        except Exception as exc:  # a malformed reply: the protocol cannot go on
            log.warning("secure aggregation failed at %s", STAGES[index], exc_info=True)
            failure = f"secure aggregation failed at '{STAGES[index]}': {exc}"
            break
        if not done:
            failure = _stopped(index, before, state, params)
            break
    aggregate = strategy.aggregate if not failure else None
    mean = None
    if aggregate is not None:
        mean = dict(zip(names, parameters_to_ndarrays(aggregate), strict=True))
    elif not failure:
        failure = "secure aggregation gave no aggregate"
    nodes = _outcomes(list(contents), recording.exchanges, revoked, strategy.results)
    return SecureResult(mean, nodes, failure)


def _names(contents: Mapping[int, RecordDict]) -> list[str]:
    first = next(iter(contents.values()))
    return list(first.array_records[ARRAYS_KEY].keys())


def _fitins(content: RecordDict) -> FitIns:
    arrays = [array.numpy() for array in content.array_records[ARRAYS_KEY].values()]
    config = cast(dict[str, Scalar], dict(content.config_records[CONFIG_KEY]))
    return FitIns(ndarrays_to_parameters(arrays), config)


def _legacy_context(run_id: int, strategy: Strategy) -> LegacyContext:
    state = RecordDict(
        {
            MAIN_CONFIGS_RECORD: ConfigRecord({WorkflowKey.CURRENT_ROUND: 1}),
            MAIN_PARAMS_RECORD: ArrayRecord(),
        }
    )
    return LegacyContext(Context(run_id, 0, {}, state, {}), strategy=strategy)


def _stopped(index: int, before: int, state: WorkflowState, params: SecureParams) -> str:
    stage = STAGES[index]
    if index == 0 and before == 0 and not state.sampled_node_ids:
        return "secure aggregation had no devices to start with"
    left = len(state.active_node_ids)
    return (
        f"secure aggregation stopped at '{stage}': {left} of {params.selected} devices still "
        f"take part, SecAgg+ needs {params.threshold} (its reconstruction threshold)"
    )


def _outcomes(
    nodes: list[int],
    exchanges: list[_Exchange],
    revoked: set[int],
    results: list[tuple[ClientProxy, FitRes]],
) -> dict[int, NodeOutcome]:
    fitres = {int(cast(GridClientProxy, proxy).node_id): res for proxy, res in results}
    collected = exchanges[COLLECT] if len(exchanges) > COLLECT else None
    outcomes: dict[int, NodeOutcome] = {}
    for node in nodes:
        included = collected is not None and node in collected.answered
        stage, error = _dropped_at(node, exchanges, revoked)
        res = fitres.get(node)
        metrics = {} if res is None else _numbers(res.metrics)
        outcomes[node] = NodeOutcome(
            included=included,
            stage=stage,
            error=error,
            revoked=node in revoked,
            weight=float(res.num_examples) if res is not None and included else 0.0,
            masked_bytes=collected.masked_bytes.get(node, 0) if collected else 0,
            metrics=metrics,
        )
    return outcomes


def _dropped_at(node: int, exchanges: list[_Exchange], revoked: set[int]) -> tuple[str | None, str]:
    for index, exchange in enumerate(exchanges):
        if index == COLLECT and node in revoked:
            return STAGES[index], ""
        if node not in exchange.asked:
            continue
        if node in exchange.errors:
            return STAGES[index], exchange.errors[node]
        if node not in exchange.answered:
            return STAGES[index], ""
    return None, ""


def _numbers(metrics: Mapping[str, Scalar]) -> dict[str, float]:
    return {
        k: float(v)
        for k, v in metrics.items()
        if isinstance(v, int | float) and not isinstance(v, bool) and np.isfinite(float(v))
    }


__all__ = ["run_secure_round", "send_and_receive"]
