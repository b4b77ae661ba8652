"""A campaign on the byte-level language model: devices holding the
int8 and int4 variants train LoRA adapters on their own stored texts (desensitised by their
example store), and the result is a version whose perplexity on the devices' kind of text is
lower than the base's. The real round logic, storage and ClientApp functions, in one process.
"""

from __future__ import annotations

import functools
import random
from pathlib import Path

import pytest
import torch
from campaign_world import BaseModel, World, add_stored, install_model, version_model
from memory_fleet import MemoryFleet

from fedota.client.data import Example
from fedota.ml.finetune import FinetuneConfig
from fedota.ml.lm import ARCHITECTURE, ByteLM, LMConfig, generate_corpus, perplexity, train_lm
from fedota.ml.lora import LoRAConfig
from fedota.server import audit
from fedota.server.aggregation import TrainingSettings
from fedota.server.campaigns import CampaignSpec, attach_run, create_campaign, get_campaign
from fedota.server.campaigns.run import CampaignRun
from fedota.storage.local_blobs import LocalBlobStore

pytestmark = pytest.mark.timeout(240)

CONFIG = LMConfig(d_model=64, n_layers=2, n_heads=4, d_ff=128, max_seq_len=128)
SETTINGS = TrainingSettings(
    finetune=FinetuneConfig(epochs=1, learning_rate=1e-2, batch_size=16),
    trainable=LoRAConfig(rank=4),
    uplink="int8",
    max_update_norm=50.0,
)
# What the fleet's users write and the base never saw: maintenance logs of one shape.
_MACHINES = ("pump", "valve", "boiler", "fan", "motor")
_STATES = ("ok", "worn", "noisy", "hot", "leaking")


def _device_text(seed: int, lines: int) -> list[str]:
    rng = random.Random(seed)
    return [
        f"log {rng.randrange(100):02d}: {rng.choice(_MACHINES)} is {rng.choice(_STATES)}, "
        f"call tech@plant.example if {rng.choice(_STATES)}."
        for _ in range(lines)
    ]


@functools.cache
def _base() -> BaseModel:
    torch.manual_seed(0)
    model = ByteLM(CONFIG)
    train_lm(model, generate_corpus(400, seed=1), steps=60, batch_size=16, seq_len=64)
    return BaseModel(model, "bytelm", ARCHITECTURE, CONFIG.to_dict())


@pytest.fixture
def lm_world(database, tmp_path: Path) -> World:  # type: ignore[no-untyped-def]
    world = World.make(database, LocalBlobStore(tmp_path / "blobs"), tmp_path / "work", _base())
    world.add_cohort("a")
    return world


# The storage under a campaign is the digits campaigns' (tested on both backends); this test is
# about the model, so one backend.
@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_a_language_model_campaign_lowers_perplexity_on_the_devices_text(
    lm_world: World, tmp_path: Path
) -> None:
    devices = {}
    for index, (name, variant) in enumerate((("d0", "int8"), ("d1", "int4"), ("d2", "int8"))):
        lm_world.add_device(name, "a")
        state = tmp_path / "devices" / name
        state.mkdir(parents=True)
        install_model(state, variant, base=_base())
        add_stored(state, [Example(label="log", text=t) for t in _device_text(index, 60)])
        devices[name] = state
    spec = CampaignSpec(rounds=2, clients_per_round=3, min_clients=3, settings=SETTINGS)
    campaign_id = create_campaign(
        lm_world.database,
        name="bytelm-tune",
        base_version_id=lm_world.base_version_id,
        spec=spec,
        actor=audit.Actor.system(),
    )
    attach_run(lm_world.database, campaign_id, 5)

    final = CampaignRun(
        lm_world.database, lm_world.blobs, MemoryFleet(devices), campaign_id, 5, lm_world.work_dir
    ).run()

    view = get_campaign(lm_world.database, campaign_id)
    assert view.state == "completed" and view.result_version == "bytelm@v3"
    for row in view.rounds:
        assert (row.selected, row.accepted) == (3, 3)
        assert row.metrics["peak_memory_bytes"] > 0 and row.uplink_bytes > 0
    # The devices' own evaluation of each aggregate improves round on round.
    assert view.rounds[1].metrics["eval_loss"] < view.rounds[0].metrics["eval_loss"]
    held_out = "\n".join(_device_text(99, 40)).encode()
    before = perplexity(version_model(lm_world, lm_world.base_version_id, tmp_path), held_out)
    after = perplexity(version_model(lm_world, final, tmp_path), held_out)
    assert after < 0.85 * before, (before, after)  # 38.2 -> 28.0 here
    # The stores kept the texts desensitised: no e-mail address reached training.
    for state in devices.values():
        assert b"tech@plant.example" not in (state / "examples.db").read_bytes()
