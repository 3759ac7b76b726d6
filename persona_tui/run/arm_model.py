"""What the model carries for each arm of a run: its LoRA adapter and its steering vector.

A run's arms differ in the model only by these two (a training study's adapter, a steered
condition's control vector); the sampling pass, the option pass and the projection pass
all switch between arms through `ArmModels`, which applies an arm's adapter
(`LoraAdapters`) and steering (`Steering`) only when they change, and gives the key the
passes group their work by (run/plan.order_for_prefix_reuse), so each is applied once.

The steering of a condition is what the session header records (`[steering.<condition>]`:
the control-vector file, its sha256, the layer and the scale); the vector is read from
that file, checked against the sha256, so a resumed run steers exactly as it started.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from persona_tui.backends.base import Backend, LoraAdapters, Steering
from persona_tui.errors import PersonaError
from persona_tui.session.model import Arm, SessionHeader, SteeringRecord


def steering_vector(record: SteeringRecord) -> Any:
    """The vector a steered condition adds (scale × the trait's direction at its layer),
    read from the recorded file; PersonaError when the file is gone or has changed."""
    from persona_tui.vectors.store import load_recorded

    use = f"steers condition {record.condition!r}"
    vectors = load_recorded(record.vectors, record.sha256, use)
    return vectors.steering_vector(record.layer, record.scale)


class ArmModels:
    """The adapter and steering of every arm of a session, applied on demand."""

    def __init__(self, backend: Backend, header: SessionHeader) -> None:
        self.backend = backend
        self.adapters: Mapping[Arm, str] = header.adapter_paths()
        self.steering: Mapping[str, SteeringRecord] = dict(header.steering)
        if self.adapters and not isinstance(backend, LoraAdapters):
            raise PersonaError(
                f"this session probes LoRA adapters, which {backend.info.backend} cannot "
                "apply; resume it with the backend and the model it was run with"
            )
        if self.steering and not isinstance(backend, Steering):
            raise PersonaError(
                f"this session steers conditions ({', '.join(sorted(self.steering))}), which "
                f"{backend.info.backend} cannot do; run it with llama.cpp or MLX"
            )
        # Nothing to switch: the passes never touch the model's adapter or steering.
        self.active = bool(self.adapters or self.steering)
        self._vectors: dict[str, Any] = {}
        self._applied: tuple[str | None, str | None] | None = None

    def key(self, arm: Arm) -> str:
        """What the model carries for `arm`, as a grouping key ("" for the plain model)."""
        adapter, steer = self._parts(arm)
        if adapter is None and steer is None:
            return ""
        return f"{adapter or ''}\x1f{steer or ''}"

    def keys(self, arms: Any) -> dict[Arm, str]:
        """`key` for each arm that carries something (run/plan.order_for_prefix_reuse)."""
        return {arm: self.key(arm) for arm in arms if self.key(arm)}

    def _parts(self, arm: Arm) -> tuple[str | None, str | None]:
        steer = self.steering.get(arm.condition)
        return self.adapters.get(arm), None if steer is None else arm.condition

    def use(self, arm: Arm) -> None:
        """Put `arm`'s adapter and steering on the model (nothing when already there)."""
        wanted = self._parts(arm)
        if not self.active or wanted == self._applied:
            return
        self._applied = None  # unknown until both are applied
        adapter, steer = wanted
        if isinstance(self.backend, LoraAdapters):
            self.backend.use_adapter(adapter)
        if isinstance(self.backend, Steering):
            if steer is None:
                self.backend.use_steering(None)
            else:
                record = self.steering[steer]
                if steer not in self._vectors:
                    self._vectors[steer] = steering_vector(record)
                self.backend.use_steering({record.layer: self._vectors[steer]})
        self._applied = wanted
