"""A coordinator's rows and devices' state directories for campaign tests.

The base model is the digits MLP trained on 150 images only (about 63% accurate: the fleet's
data has much to add); each device holds its int8 variant in its active slot and a skewed
(non-IID) shard of the training digits in its example store, as a daemon would.
"""

from __future__ import annotations

import datetime as dt
import functools
import hashlib
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from sqlalchemy import select

from fedota.client.data import Desensitizer, Example, ExampleStore
from fedota.client.keys import generate_key
from fedota.client.update import SlotStore
from fedota.delta import load as load_tensors
from fedota.delta import model_hash
from fedota.ml import digits
from fedota.ml.checkpoint import save_checkpoint
from fedota.ml.finetune import FinetuneConfig
from fedota.ml.lora import LoRAConfig
from fedota.ml.quant import packed_int4_shapes, quantize_model
from fedota.server.aggregation import TrainingSettings
from fedota.server.bootstrap import DEFAULT_FLEET
from fedota.server.campaigns.weights import load_base_model
from fedota.storage.blobs import BlobStore
from fedota.storage.db import Database
from fedota.storage.models import (
    Cohort,
    Device,
    DeviceState,
    Fleet,
    ModelArtifact,
    ModelFamily,
    ModelVersion,
    Variant,
    VersionSource,
)
from fedota.storage.types import new_id
from fedota.update_targets import ArtifactTarget

FAMILY = "digits"
# What the digits campaigns train: LoRA on the int8 base, an int8 uplink, a norm bound that a
# hostile device's update exceeds.
DIGITS_SETTINGS = TrainingSettings(
    finetune=FinetuneConfig(epochs=3, learning_rate=2e-2),
    trainable=LoRAConfig(rank=4),
    uplink="int8",
    max_update_norm=50.0,
)
SHARD_SIZE = 200


@functools.cache
def digits_data() -> digits.DigitsData:
    return digits.load_digits_data(seed=0)


@functools.cache
def base_model() -> digits.DigitsMLP:
    torch.set_num_threads(1)
    data = digits_data()
    first = replace(data, x_train=data.x_train[:150], y_train=data.y_train[:150])
    model, _ = digits.train_digits(seed=0, epochs=5, data=first)
    return model


def held_out_accuracy(model: torch.nn.Module) -> float:
    data = digits_data()
    return digits.accuracy(model, data.x_test, data.y_test)  # type: ignore[arg-type]


def shard(index: int) -> list[tuple[np.ndarray, int]]:
    """Device `index`'s non-IID shard: mostly four favoured classes, some of every class."""
    data = digits_data()
    rng = np.random.default_rng(index)
    favoured = np.isin(data.y_train, [(index * 3 + k) % 10 for k in range(4)])
    pick = np.flatnonzero(favoured)[: SHARD_SIZE - 50].tolist()
    pick += rng.choice(len(data.y_train), 50, replace=False).tolist()
    return [(data.x_train[i], int(data.y_train[i])) for i in pick]


@dataclass(frozen=True)
class BaseModel:
    """A campaign's base: the model, its family name and its architecture description."""

    model: torch.nn.Module
    family: str
    architecture: str
    config: dict[str, Any]


def digits_base() -> BaseModel:
    model = base_model()
    return BaseModel(model, FAMILY, digits.ARCHITECTURE, digits.config_of(model))


def write_checkpoint(
    path: Path, model: torch.nn.Module, variant: str, base: BaseModel | None = None
) -> str:
    """Save the model's `variant` to `path` (as `base`'s architecture, digits by default);
    its canonical content hash."""
    base = base or digits_base()
    built = model if variant == "fp32" else quantize_model(model, variant)  # type: ignore[arg-type]
    save_checkpoint(
        path,
        built.state_dict(),
        architecture=base.architecture,
        config=base.config,
        variant=variant,
        packed_int4=packed_int4_shapes(built),
    )
    return model_hash(load_tensors(path))


def public_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


@dataclass
class World:
    """A fleet with cohorts, a family (`digits` unless another base is given) with the base
    as v1, and devices."""

    database: Database
    blobs: BlobStore
    work_dir: Path
    fleet_id: str = ""
    family_id: str = ""
    base_version_id: str = ""
    cohorts: dict[str, str] = field(default_factory=dict)
    keys: dict[str, ec.EllipticCurvePrivateKey] = field(default_factory=dict)

    @classmethod
    def make(
        cls, database: Database, blobs: BlobStore, work_dir: Path, base: BaseModel | None = None
    ) -> World:
        base = base or digits_base()
        world = cls(database, blobs, work_dir)
        work_dir.mkdir(parents=True, exist_ok=True)
        path = work_dir / "base.safetensors"
        content = write_checkpoint(path, base.model, "fp32", base)
        with path.open("rb") as handle:
            blob = blobs.put_file(handle)
        with database.transaction() as session:
            fleet = Fleet(id=new_id("flt"), name=DEFAULT_FLEET)
            family = ModelFamily(
                id=new_id("fam"),
                name=base.family,
                architecture=base.architecture,
                architecture_config=base.config,
            )
            session.add_all([fleet, family])
            session.flush()
            version = ModelVersion(
                id=new_id("mv"),
                family_id=family.id,
                number=1,
                content_sha256=content,
                source=VersionSource.IMPORT,
                parameter_count=sum(p.numel() for p in base.model.parameters()),
            )
            session.add(version)
            session.flush()
            session.add(
                ModelArtifact(
                    id=new_id("art"),
                    version_id=version.id,
                    variant=Variant.FP32,
                    blob_sha256=blob.key,
                    size_bytes=blob.size,
                    content_sha256=content,
                )
            )
            world.fleet_id, world.family_id, world.base_version_id = fleet.id, family.id, version.id
        return world

    def add_cohort(self, name: str) -> str:
        with self.database.transaction() as session:
            cohort = Cohort(id=new_id("coh"), fleet_id=self.fleet_id, name=name)
            session.add(cohort)
        self.cohorts[name] = cohort.id
        return cohort.id

    def add_device(self, device_id: str, cohort: str) -> ec.EllipticCurvePrivateKey:
        """An accepted device with a fresh key, in `cohort`."""
        key = generate_key()
        pem = public_pem(key)
        with self.database.transaction() as session:
            session.add(
                Device(
                    id=device_id,
                    fleet_id=self.fleet_id,
                    cohort_id=self.cohorts[cohort],
                    state=DeviceState.ACCEPTED,
                    hardware_class="cpu",
                    public_key_sha256=hashlib.sha256(pem).hexdigest(),
                    public_key_pem=pem.decode(),
                )
            )
        self.keys[device_id] = key
        return key

    def set_state(self, device_id: str, state: DeviceState) -> None:
        with self.database.transaction() as session:
            device = session.get(Device, device_id)
            assert device is not None
            device.state = state


def prepare_device(state_dir: Path, index: int, variant: str = "int8", version: int = 1) -> None:
    """A daemon-like state directory: the base's `variant` in the active slot, shard `index` in
    the example store."""
    state_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    install_model(state_dir, variant, version)
    add_examples(state_dir, shard(index))


def install_model(
    state_dir: Path, variant: str = "int8", version: int = 1, base: BaseModel | None = None
) -> None:
    """`base`'s `variant` (the digits base by default) in the device's active slot."""
    base = base or digits_base()
    slots = SlotStore(state_dir)
    with slots.lock():
        path = slots.begin_install()
        path.parent.mkdir(parents=True, exist_ok=True)
        content = write_checkpoint(path, base.model, variant, base)
        slots.commit_install(ArtifactTarget(base.family, version, variant, content))
        slots.switch()
        slots.confirm()


def add_examples(state_dir: Path, examples: list[tuple[np.ndarray, int]]) -> None:
    add_stored(
        state_dir,
        [
            Example(label=str(label), features=tuple(float(v) for v in pixels))
            for pixels, label in examples
        ],
    )


def add_stored(state_dir: Path, examples: list[Example]) -> None:
    """Examples into the device's store, as the daemon's local API adds them."""
    with ExampleStore(
        state_dir / "examples.db",
        max_bytes=64 << 20,
        max_age=dt.timedelta(days=30),
        desensitizer=Desensitizer([]),
    ) as store:
        for example in examples:
            store.add(example)


def version_model(world: World, version_id: str, tmp_path: Path) -> torch.nn.Module:
    """The fp32 model a version of `world`'s registry stores (as the coordinator loads it)."""
    with world.database.session() as session:
        artifact = session.scalars(
            select(ModelArtifact).where(
                ModelArtifact.version_id == version_id, ModelArtifact.variant == Variant.FP32
            )
        ).one()
    return load_base_model(world.blobs, artifact.blob_sha256, tmp_path).module
