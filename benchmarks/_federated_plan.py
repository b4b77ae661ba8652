"""What the federated benchmark runs: sizes, rounds, arms; the full run and `--quick`."""

from __future__ import annotations

from dataclasses import dataclass, field

# The memory comparison's model: the runtime issue's small LM (76.6 MB fp32).
ISSUE_LM = {"d_model": 512, "n_layers": 6, "n_heads": 8, "d_ff": 2048, "max_seq_len": 1024}


@dataclass(frozen=True)
class DpArm:
    """A DP arm: client clip bound and noise multiplier."""

    name: str
    clip: float
    noise_multiplier: float


@dataclass(frozen=True)
class Plan:
    """Every size of one run. `Plan()` is the full run; `Plan.quick_plan()` the `--quick` one.

    Digits: `digits_seeds` independent repetitions (split, schedule, base, local shuffles);
    accuracy figures are means over them. `compressed_uplink` is the arm the compression
    targets are measured on, fixed here before anything runs.
    """

    quick: bool = False
    # digits
    digits_seeds: tuple[int, ...] = (0, 1, 2)
    digits_devices: int = 20
    digits_per_round: int = 10
    digits_rounds: int = 40
    digits_alpha: float = 0.5
    digits_hidden: tuple[int, ...] = (256, 128)
    digits_base_epochs: int = 8
    digits_epochs: int = 2
    digits_lr: float = 0.003
    digits_batch: int = 32
    digits_uplinks: tuple[str, ...] = (
        "none",
        "int8",
        "topk:0.01",
        "topk:0.01+int8",
        "topk:0.05+int8",
    )
    compressed_uplink: str = "topk:0.05+int8"
    digits_dp: tuple[DpArm, ...] = (
        DpArm("fedota-dp-sigma0.1", 1.0, 0.1),
        DpArm("fedota-dp-sigma1", 1.0, 1.0),
    )
    digits_lora_rank: int = 4
    digits_lora_uplinks: tuple[str, ...] = ("none", "topk:0.01+int8", "topk:0.05+int8")
    final_rounds: int = 3
    # language model
    lm_d_model: int = 128
    lm_layers: int = 2
    lm_heads: int = 4
    lm_max_seq_len: int = 128
    lm_seq_len: int = 64
    lm_pretrain_steps: int = 300
    lm_pretrain_lines: int = 3000
    lm_devices: int = 10
    lm_per_round: int = 5
    lm_rounds: int = 12
    lm_lines_per_device: int = 120
    lm_held_out_lines: int = 300
    lm_alpha: float = 0.5
    lm_local_steps: int = 8
    lm_batch: int = 16
    lm_lr: float = 3e-3
    lm_lora_rank: int = 4
    lm_base: str = "int8"
    lm_uplinks: tuple[str, ...] = ("none", "int8", "topk:0.01", "topk:0.01+int8")
    lm_seed: int = 0
    # client peak training memory
    memory_lm: dict[str, int] = field(default_factory=lambda: dict(ISSUE_LM))
    memory_steps: int = 3
    memory_batches: tuple[int, ...] = (1, 8)
    memory_target_batch: int = 1
    memory_seq_len: int = 128
    memory_lora_rank: int = 8

    @classmethod
    def quick_plan(cls) -> Plan:
        """Fewer seeds, devices, rounds and a smaller LM: under five minutes on 2 cores."""
        return cls(
            quick=True,
            digits_seeds=(0, 1),
            digits_rounds=20,
            lm_d_model=64,
            lm_pretrain_steps=150,
            lm_pretrain_lines=1500,
            lm_rounds=6,
            lm_lines_per_device=80,
            lm_held_out_lines=150,
            memory_steps=2,
            memory_batches=(1,),
        )


__all__ = ["ISSUE_LM", "DpArm", "Plan"]
