"""The curriculum as data: stages with a band, a budget, an LR and an optional promotion rule.

The learning rate is a pure function of the train state (global step, current stage and the step
at which it began): a linear warmup at the start of the run, then a cosine from the stage's LR down
to ``min_lr_ratio`` of it over the stage's budget. Nothing but the :class:`CurriculumState` needs
saving to resume it exactly.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Stage:
    """Train on ``components`` for at most ``steps`` steps at peak learning rate ``lr``.

    ``noise``/``drift``/``families`` override the base signal spec when set (``families``: a mixture,
    see :class:`harmonic_forecast.signals.SignalSpec`). With ``promote_below``, the stage
    ends early at an evaluation, once ``min_steps`` have passed, if the validation MSE on its band
    is below the threshold.
    """

    components: tuple[int, int]
    steps: int
    lr: float
    noise: float | tuple[float, ...] | None = None
    drift: bool | str | None = None
    families: tuple[Any, ...] | None = None
    promote_below: float | None = None
    min_steps: int = 0


@dataclass
class CurriculumState:
    """Where the run stands in the curriculum."""

    stage: int = 0
    stage_start: int = 0

    def state_dict(self) -> dict[str, int]:
        """Plain values for the checkpoint."""
        return {"stage": self.stage, "stage_start": self.stage_start}

    def load_state_dict(self, state: dict[str, int]) -> None:
        """Continue from saved values."""
        self.stage, self.stage_start = int(state["stage"]), int(state["stage_start"])

    def advance(self, step: int) -> None:
        """Move to the next stage, starting at global ``step``."""
        self.stage += 1
        self.stage_start = step


def stage_finished(stage: Stage, state: CurriculumState, step: int) -> bool:
    """True when the stage has used its whole budget."""
    return step - state.stage_start >= stage.steps


def promotion_due(stage: Stage, state: CurriculumState, step: int, validation_mse: float) -> bool:
    """True when the stage's promotion rule holds after an evaluation at ``step``."""
    return (
        stage.promote_below is not None
        and step - state.stage_start >= stage.min_steps
        and validation_mse < stage.promote_below
    )


def learning_rate(stage: Stage, state: CurriculumState, step: int, warmup_steps: int, min_lr_ratio: float) -> float:
    """The LR of the optimiser step taken at global ``step`` (0-based)."""
    warmup = min(1.0, (step + 1) / warmup_steps) if warmup_steps > 0 else 1.0
    progress = min(1.0, (step - state.stage_start) / max(1, stage.steps))
    cosine = min_lr_ratio + (1 - min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress))
    return stage.lr * warmup * cosine
