"""TrainBridge: steps coalesced per interval, other events in order, nothing lost."""

from __future__ import annotations

from pathlib import Path

from textual.message import Message

from persona_tui.training.params import CheckpointSaved, StepFinished
from persona_tui.ui.train_bridge import TrainBridge, TrainingEventMessage, TrainingSteps


def step(n: int, condition: str = "learns") -> StepFinished:
    return StepFinished(condition, n, 10, 1, 1.0 / n, 100.0, 10.0 - n)


def test_steps_are_coalesced_and_flushed_before_other_events() -> None:
    posted: list[Message] = []
    now = [0.0]
    bridge = TrainBridge(posted.append, interval=0.05, clock=lambda: now[0])
    bridge(step(1))  # the first step goes out at once
    bridge(step(2))
    bridge(step(3))  # within the interval: held back
    assert [type(m) for m in posted] == [TrainingSteps]
    bridge(CheckpointSaved("learns", 3, Path("ckpt")))  # flushes the held steps first
    assert [type(m) for m in posted] == [TrainingSteps, TrainingSteps, TrainingEventMessage]
    second = posted[1]
    assert isinstance(second, TrainingSteps)
    assert [s.step for s in second.steps] == [2, 3] and second.latest.step == 3
    now[0] = 1.0
    bridge(step(4))
    bridge(step(1, "plays"))  # another condition: never mixed into one message
    bridge.flush()
    batches = [m for m in posted if isinstance(m, TrainingSteps)]
    assert [[(s.condition, s.step) for s in m.steps] for m in batches] == [
        [("learns", 1)],
        [("learns", 2), ("learns", 3)],
        [("learns", 4)],
        [("plays", 1)],
    ]
