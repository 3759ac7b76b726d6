"""mlx-lm LoRA adapters on a loaded MLX model, switched without reloading the weights.

An adapter is an mlx-lm adapter folder (`adapters.safetensors` + `adapter_config.json`,
what `mlx_lm.load(model, adapter_path=folder)` applies). Loading one wraps the model's
layers exactly as mlx-lm's `load_adapters` does (its own `linear_to_lora_layers` with the
folder's config, then its weights), keeps the LoRA modules it made, and puts the plain
modules back. Applying it swaps those LoRA modules in (each wraps the model's own plain
module, so no weight is copied); no adapter swaps the plain modules back, the very objects
the model was loaded with, so the untouched model computes exactly what it did before.

Two adapters may differ in rank, scale, layers and projections: each keeps its own
modules, and only one set is in the model at a time. Everything that runs the model (the
generation, the batch generator, the scoring scope) sees the adapter applied now.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from persona_tui.backends.adapter_files import MLX_ADAPTER
from persona_tui.errors import ModelLoadError

_ADAPTER_LEAVES = ("lora_a", "lora_b", "m")  # mlx-lm's adapter parameters (m: DoRA)
_FIX = "train it again (persona-tui train SCENARIO --model <the MLX folder>)"


def adapter_folder(path: Path) -> Path:
    """The adapter folder `path` names: the folder, or one of its two files."""
    path = path.expanduser().absolute()
    return path.parent if path.is_file() and path.name in MLX_ADAPTER.files else path


@dataclass(frozen=True)
class _Adapter:
    modules: tuple[tuple[str, Any], ...]  # (module path in the model, its LoRA module)


class AdapterSwitch:
    """The adapter on a model (by folder), each adapter loaded once; not thread-safe (the
    backend's lock guards it)."""

    def __init__(self, model: Any) -> None:
        self._model = model
        self._adapters: dict[str, _Adapter] = {}
        self._plain: dict[str, Any] = {}  # module path -> the model's own module there
        self.active: str | None = None

    def use(self, folder: str | None) -> None:
        """Apply the adapter folder `folder` (absolute), or none. A bad folder raises
        ModelLoadError naming the file and leaves the model without an adapter."""
        if folder == self.active:
            return
        self._restore()
        if folder is None:
            return
        adapter = self._adapters.get(folder) or self._load(Path(folder))
        self._swap(adapter.modules)
        self.active = folder

    def clear(self) -> None:
        """Back to the plain model; forget every loaded adapter."""
        self._restore()
        self._adapters.clear()
        self._plain.clear()

    def _restore(self) -> None:
        if self.active is not None:
            modules = self._adapters[self.active].modules
            self._swap(tuple((path, self._plain[path]) for path, _ in modules))
            self.active = None

    def _swap(self, modules: tuple[tuple[str, Any], ...]) -> None:
        from mlx.utils import tree_unflatten

        if modules:
            self._model.update_modules(tree_unflatten(list(modules)))

    def _load(self, folder: Path) -> _Adapter:
        """Read and check the folder, and make its LoRA modules (the model is plain now)."""
        import mlx.core as mx
        from mlx.utils import tree_flatten
        from mlx_lm.tuner.utils import linear_to_lora_layers

        config = read_adapter_config(folder)
        weights = _read_weights(folder)
        model = self._model
        plain = dict(model.named_modules())
        try:
            try:
                linear_to_lora_layers(
                    model,
                    config["num_layers"],
                    config["lora_parameters"],
                    use_dora=config.get("fine_tune_type", "lora") == "dora",
                )
            except (KeyError, ValueError, TypeError) as error:
                raise ModelLoadError(
                    f"{folder / MLX_ADAPTER.config}: mlx-lm cannot apply this LoRA config to "
                    f"the model ({error}); {_FIX}"
                ) from None
            wrapped = _changed(model, plain)
            _check_weights(folder, weights, dict(tree_flatten(model.parameters())))
            model.load_weights(list(weights.items()), strict=False)
            for _, module in wrapped:
                module.eval()  # dropout off, as mlx_lm.load leaves the model
            mx.eval([module.parameters() for _, module in wrapped])
        finally:  # the plain modules back, whatever happened
            self._swap(tuple((path, plain[path]) for path, _ in _changed(model, plain)))
        for path, _ in wrapped:
            self._plain.setdefault(path, plain[path])
        adapter = _Adapter(tuple(wrapped))
        self._adapters[str(folder)] = adapter
        return adapter


def _changed(model: Any, plain: dict[str, Any]) -> list[tuple[str, Any]]:
    """The modules of `model` that are no longer the ones in `plain` (by path)."""
    return [(p, m) for p, m in model.named_modules() if p in plain and m is not plain[p]]


def read_adapter_config(folder: Path) -> dict[str, Any]:
    """The folder's adapter_config.json, checked as far as mlx-lm's LoRA needs it."""
    if not folder.exists():
        raise ModelLoadError(
            f"MLX LoRA adapter folder {folder} does not exist; give the adapter folder "
            f"`persona-tui train` wrote ({MLX_ADAPTER.written_in})"
        )
    if not folder.is_dir():
        other = "a llama.cpp LoRA adapter GGUF, which" if folder.suffix == ".gguf" else "a file;"
        raise ModelLoadError(
            f"{folder} is {other} the MLX backend cannot apply: it applies "
            f"{MLX_ADAPTER.spelled}, such as the {MLX_ADAPTER.written_in} that `persona-tui "
            "train` writes when trained on an MLX model folder"
        )
    file = folder / MLX_ADAPTER.config
    for needed in (file, folder / MLX_ADAPTER.weights):
        if not needed.is_file():
            raise ModelLoadError(
                f"the MLX LoRA adapter {folder} has no {needed.name} (an mlx-lm adapter folder "
                f"holds {' and '.join(MLX_ADAPTER.files)}); {_FIX}"
            )
    try:
        config = json.loads(file.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as error:
        raise ModelLoadError(f"{file} is not readable JSON ({error}); {_FIX}") from None
    if not isinstance(config, dict):
        raise ModelLoadError(f"{file}: expected a JSON object; {_FIX}")
    kind = config.get("fine_tune_type", "lora")
    if kind not in ("lora", "dora"):
        raise ModelLoadError(
            f"{file}: fine_tune_type {kind!r} is not a LoRA adapter (persona-tui applies "
            "'lora' or 'dora' adapters on top of the model); use a LoRA adapter"
        )
    layers = config.get("num_layers")
    lora = config.get("lora_parameters")
    problems = []
    if not isinstance(layers, int) or isinstance(layers, bool):
        problems.append("num_layers must be an integer")
    if not isinstance(lora, dict):
        problems.append("lora_parameters must be a table")
    else:
        for key in ("rank", "scale"):
            value = lora.get(key)
            if not isinstance(value, int | float) or isinstance(value, bool):
                problems.append(f"lora_parameters.{key} must be a number")
        keys = lora.get("keys")
        if keys is not None and not (
            isinstance(keys, list) and all(isinstance(k, str) for k in keys)
        ):
            problems.append("lora_parameters.keys must be a list of module names")
        lora.setdefault("dropout", 0.0)
    if problems:
        raise ModelLoadError(f"{file}: {'; '.join(problems)}; {_FIX}")
    return config


def _read_weights(folder: Path) -> dict[str, Any]:
    import mlx.core as mx

    file = folder / MLX_ADAPTER.weights
    try:
        weights = mx.load(str(file))
    except (OSError, RuntimeError, ValueError) as error:
        raise ModelLoadError(
            f"{file} cannot be read as safetensors ({error}): the file is damaged; {_FIX}"
        ) from None
    if not isinstance(weights, dict) or not weights:
        raise ModelLoadError(f"{file} holds no adapter weights; {_FIX}")
    return weights


def _check_weights(folder: Path, weights: dict[str, Any], params: dict[str, Any]) -> None:
    """Every weight an adapter parameter of the wrapped model, of its shape, and every
    adapter parameter given (mlx-lm's own check, plus completeness: a missing lora_a would
    stay random)."""
    wanted = {name: p for name, p in params.items() if name.rsplit(".", 1)[-1] in _ADAPTER_LEAVES}
    problems = []
    for name, value in sorted(weights.items()):
        if name not in wanted:
            problems.append(f"{name} is not an adapter parameter of this model")
        elif tuple(value.shape) != tuple(wanted[name].shape):
            problems.append(
                f"{name} is {tuple(value.shape)}, the model's is {tuple(wanted[name].shape)}"
            )
    absent = sorted(set(wanted) - set(weights))
    if absent:
        problems.append(f"no weights for {len(absent)} adapter parameter(s), e.g. {absent[0]}")
    if problems:
        shown = "; ".join(problems[:3]) + (f" (and {len(problems) - 3} more)" * (len(problems) > 3))
        raise ModelLoadError(
            f"{folder / MLX_ADAPTER.weights} does not fit this model with its "
            f"{MLX_ADAPTER.config}: {shown}. It was probably trained on another base model; "
            "train it on this model"
        )
