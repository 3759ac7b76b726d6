"""The LoRA adapters a run may load: found, checked once, recorded, checked again on resume.

`persona-tui train` leaves each training run's adapter in DIR/<condition>/replicate-<k>/
(`replicate_folder`; k = 1..N, N the study's `[training] replicates`) beside its
training.toml: `adapter.gguf` (llama.cpp) when trained on a GGUF, the mlx-lm adapter
folder `mlx/` (adapters.safetensors + adapter_config.json) when trained on an MLX folder.
A run of the study probes each training condition with each of its replicates' adapters
(the others run on the untouched model). `study_adapters` finds them, from `--adapters
learns=DIR,...` (a condition folder with replicates, or one adapter: a replicate folder,
a folder of the layout before replicates, or the adapter itself: one training run) or else
from `train`'s default output folder for the scenario and model (`default_output`), checks
each against its training record and the loaded model's engine, and returns the
`AdapterRecord`s the session header records; `check_adapters_load` loads each once before
anything runs, and `check_same_adapters` refuses to resume a session whose adapter files
changed. Which file is which engine's is data (backends/adapter_files.py), so both engines
go through the same code. These are the only adapter rules: the CLI, `study` and the app
reach them through `run.lifecycle`; training writes where `replicate_folder` says.

No heavy imports: this runs for every run of a training study.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from persona_tui import paths
from persona_tui._util.hashing import sha256_file
from persona_tui._util.tables import did_you_mean
from persona_tui._util.textdata import DataFileError, loads_toml
from persona_tui.backend_names import LLAMA_CPP, MLX
from persona_tui.backends.adapter_files import (
    ADAPTER_FORMATS,
    GGUF_ADAPTER,
    TRAINING_RECORD,
    AdapterFormat,
    adapter_config,
    adapter_format,
    adapter_weights,
)
from persona_tui.backends.base import Backend, LoraAdapters
from persona_tui.backends.detect import is_mlx_model
from persona_tui.errors import PersonaError
from persona_tui.scenario.model import Scenario
from persona_tui.session.model import AdapterRecord, SessionHeader

# The hyperparameters a session copies from a training record (all of it is kept as text).
_HYPERPARAMETERS = ("epochs", "max_steps", "rank", "alpha", "lr", "batch_size", "seed")


def parse_adapters_option(text: str) -> dict[str, Path]:
    """`learns=DIR,plays=DIR` -> {condition: path}; PersonaError naming a malformed part."""
    found: dict[str, Path] = {}
    for part in (p.strip() for p in text.split(",")):
        if not part:
            continue
        name, sep, where = part.partition("=")
        if not sep or not name.strip() or not where.strip():
            raise PersonaError(
                f"--adapters {text!r}: {part!r} is not CONDITION=DIR (e.g. "
                "learns=adapters/learns,plays=adapters/plays)"
            )
        if name.strip() in found:
            raise PersonaError(f"--adapters {text!r}: {name.strip()!r} is named twice")
        found[name.strip()] = Path(where.strip()).expanduser()
    return found


def study_adapters(
    scenario: Scenario,
    model_path: Path,
    model_sha256: str,
    given: Mapping[str, Path] | None = None,
    conditions: Sequence[str] | None = None,
    folder: Path | None = None,
    backend: str | None = None,
    replicates: int | None = None,
    step: int | None = None,
) -> tuple[AdapterRecord, ...]:
    """The adapters of each training condition among `conditions` (None: all), in scenario
    order, each condition's replicates 1..`replicates` (None: the scenario's `[training]
    replicates`): the condition folder `given` names, else the one in `folder` (None:
    `train`'s default output folder for this scenario and model). A condition whose folder
    holds one adapter (named by --adapters, or trained before replicates) is one training
    run (replicate 0). With `step`, each run's checkpoint at that step instead of its
    finished adapter (`checkpoint_folder`). The adapters are the kind `backend` applies
    (None: as training decides, an MLX folder when `model_path` is a folder, else a GGUF).

    Raises PersonaError when one is missing (run `persona-tui train` first) or incomplete,
    is the other engine's kind, a name is not a training condition, the scenario is not a
    training study, or an adapter was trained on another model or for another condition.
    """
    given = dict(given or {})
    training = [c.id for c in scenario.training_conditions]
    if scenario.training is None:
        if given:
            raise PersonaError(
                f"--adapters: scenario {scenario.id!r} is not a training study (it has no "
                "[training] table), so none of its conditions has an adapter"
            )
        return ()
    count = scenario.training.replicates if replicates is None else replicates
    if count < 1:
        raise PersonaError(f"--replicates must be at least 1, got {count}")
    others = {c.id for c in scenario.conditions} - set(training)
    for name in given:
        if name not in training:
            hint = did_you_mean(name, training)
            untouched = (
                f" ({name!r} has no [conditions.training]: it runs on the untouched model)"
                if name in others
                else ""
            )
            raise PersonaError(
                f"--adapters: {name!r} is not a training condition of {scenario.id!r}"
                f"{untouched};{hint or ''} its training conditions are: {', '.join(training)}"
            )
    # In the order of `conditions` (the plan's), so the session lists them as it runs them;
    # a condition a test framing derives carries the adapters of the one it comes from.
    adapter_of = {c.id: c.adapter_condition for c in scenario.conditions if c.adapter_condition}
    wanted = [c for c in (conditions or adapter_of) if c in adapter_of]
    default = folder if folder is not None else default_output(scenario.id, Path(model_path))
    kind = adapter_kind(backend, Path(model_path))
    records: list[AdapterRecord] = []
    missing: list[str] = []
    found_for: dict[str, list[tuple[int, Path]] | str] = {}
    for condition in wanted:
        source = adapter_of[condition]
        if source not in found_for:
            named = source in given
            where = given[source] if named else default / source
            found_for[source] = _condition_adapters(kind, where, source, named, count, step)
        found = found_for[source]
        if isinstance(found, str):
            if condition == source:
                missing.append(found)
            continue
        records += [adapter_record(condition, a, model_sha256, k, source) for k, a in found]
    if missing:
        raise PersonaError(
            f"scenario {scenario.id!r} is a training study: {'; '.join(missing)}. Train "
            f"them first: persona-tui train {scenario.id} --model {model_path} "
            f"--replicates {count} (or name trained ones with --adapters CONDITION=DIR)"
        )
    return tuple(records)


REPLICATE_PREFIX = "replicate-"


def replicate_folder(condition_folder: Path, replicate: int) -> Path:
    """Where training run `replicate` (1..N) of a condition keeps its adapter, loss curve,
    training record and checkpoint: CONDITION_FOLDER/replicate-<k>."""
    if replicate < 1:
        raise ValueError(f"replicates are numbered from 1, got {replicate}")
    return condition_folder / f"{REPLICATE_PREFIX}{replicate}"


CHECKPOINTS_FOLDER = "checkpoints"


def checkpoint_folder(run_folder: Path, step: int) -> Path:
    """Where a training run keeps the adapter of its checkpoint at `step` (with the
    training record of that step), when trained with `--keep-checkpoints`:
    RUN_FOLDER/checkpoints/step-<step>."""
    return run_folder / CHECKPOINTS_FOLDER / f"step-{step}"


def _condition_adapters(
    kind: AdapterFormat,
    where: Path,
    condition: str,
    named: bool,
    count: int,
    step: int | None = None,
) -> list[tuple[int, Path]] | str:
    """The (replicate, adapter) pairs of a condition folder: replicates 1..count when it
    holds replicate folders (their checkpoints' at `step`, when given), else its one
    adapter (replicate 0); a sentence saying what is missing when the folder has not been
    trained (nor named by --adapters)."""
    runs = [replicate_folder(where, k) for k in range(1, count + 1)]
    if not any(r.is_dir() for r in runs):
        one = None if step is not None else _find_adapter(kind, where, condition, named)
        if one is not None:
            return [(0, one)]
        return f"{condition!r} has no {'training runs' if step else 'adapter'} in {where}"
    if step is not None:
        runs = [checkpoint_folder(r, step) for r in runs]
    found = [(k, _find_adapter(kind, r, condition, False)) for k, r in enumerate(runs, 1)]
    absent = ", ".join(str(k) for k, adapter in found if adapter is None)
    if absent and step is not None:
        return (
            f"run(s) {absent} of {condition!r} have no adapter of their step-{step} "
            f"checkpoint in {where} (train with --keep-checkpoints, or `study "
            "--probe-checkpoints`, to keep them)"
        )
    if absent:
        return (
            f"{condition!r} is probed with {count} training runs, and replicate(s) "
            f"{absent} of them have no adapter in {where}"
        )
    return [(k, adapter) for k, adapter in found if adapter is not None]


def default_output(scenario_id: str, model_path: Path) -> Path:
    """The data folder's `adapters/SCENARIO--MODEL`, where a study's adapters go by default
    (`persona-tui train` writes there; a run looks there when --adapters names none)."""
    return paths.data_dir() / "adapters" / f"{scenario_id}--{model_path.stem}"


def adapter_kind(backend: str | None, model_path: Path) -> AdapterFormat:
    """The adapter `backend` applies (None: as training decides, MLX's for a model folder,
    else llama.cpp's GGUF)."""
    if backend is None:
        backend = MLX if is_mlx_model(model_path) else LLAMA_CPP
    # A backend that applies no adapter is refused by `check_adapters_load`.
    return adapter_format(backend) or GGUF_ADAPTER


def _find_adapter(kind: AdapterFormat, where: Path, condition: str, named: bool) -> Path | None:
    """The `kind` adapter `where` names (a condition folder or the adapter), complete;
    None when there is none and it was not named by --adapters."""
    found = kind.locate(where)
    option = f"--adapters {condition}={where}: " if named else ""
    if found is None:
        other = next((f for f in ADAPTER_FORMATS if f is not kind and f.locate(where)), None)
        if other is not None:
            raise PersonaError(
                f"{option}the adapter of {condition!r} in {where} is {other.spelled}, which "
                f"the {other.backend} backend applies; the model is loaded with "
                f"{kind.backend}, which needs {kind.spelled}. Train the study on this model "
                f"(`persona-tui train` leaves it in {kind.written_in}), or probe with "
                f"{other.backend} on the model the adapter was trained on"
            )
        if not named:
            return None
        inside = f" (no {' or '.join(kind.files)} in that folder)" if where.is_dir() else ""
        raise PersonaError(
            f"{option}no such adapter{inside}; give a condition folder of `persona-tui "
            f"train` (it leaves {kind.kind} in {kind.written_in}) or the adapter itself"
        )
    absent = kind.missing(found)
    if absent:
        raise PersonaError(
            f"{option}the adapter of {condition!r}, {found}, is incomplete: "
            f"{', '.join(str(p) for p in absent)} is missing ({kind.kind} holds "
            f"{' and '.join(kind.files)}); train it again (persona-tui train) or restore it"
        )
    return found.absolute()


def adapter_record(
    condition: str,
    adapter: Path,
    model_sha256: str,
    replicate: int = 0,
    trained_for: str | None = None,
) -> AdapterRecord:
    """What a session records of `adapter` for `condition` (training run `replicate`, 0:
    the condition's one adapter; trained for the condition `trained_for`, None: the same,
    another for a condition a test framing derives): a GGUF file, or an mlx-lm
    adapter folder, whose sha256 and size are those of its adapters.safetensors (the
    weights; its adapter_config.json is hashed as `config_sha256`), with the training.toml
    beside it (in the condition folder; an adapter without one is recorded without
    training facts).

    Raises PersonaError when the record says the adapter was trained on another base model,
    for another condition, or the weights are not the ones the record describes.
    """
    adapter = adapter.absolute()
    weights, config = adapter_weights(adapter), adapter_config(adapter)
    sha256 = sha256_file(weights)
    record_path = adapter.parent / TRAINING_RECORD
    text = _read_text(record_path)
    facts: dict[str, Any] = {}
    if text is not None:
        try:
            facts = loads_toml(text, record_path)
        except DataFileError as error:
            raise PersonaError(f"{record_path}: not a readable training record: {error}") from None
        _check_record(facts, record_path, trained_for or condition, adapter, sha256, model_sha256)
        trained_as = _table(facts, "replicate").get("index")
        if replicate and isinstance(trained_as, int) and trained_as != replicate:
            raise PersonaError(
                f"{adapter} is in the folder of replicate {replicate} of {condition!r}, but "
                f"its training record ({record_path}) says replicate {trained_as}; train it "
                "again or put it back where it was trained"
            )
    base = _table(facts, "base_model")
    data = _table(facts, "data")
    result = _table(facts, "result")
    hyper = _table(facts, "hyperparameters")
    return AdapterRecord(
        condition=condition,
        path=str(adapter),
        sha256=sha256,
        size_bytes=weights.stat().st_size,
        config_sha256=sha256_file(config) if config is not None else "",
        base_model_sha256=str(base.get("sha256", "")),
        data_sha256=str(data.get("sha256", "")),
        steps=int(result.get("steps", 0)) if isinstance(result.get("steps"), int) else 0,
        hyperparameters={k: _text(hyper[k]) for k in _HYPERPARAMETERS if k in hyper},
        training_sha256=hashlib.sha256(text.encode()).hexdigest() if text is not None else "",
        training_record=text or "",
        replicate=replicate,
    )


def _check_record(
    facts: Mapping[str, Any],
    record_path: Path,
    condition: str,
    adapter: Path,
    sha256: str,
    model_sha256: str,
) -> None:
    base = str(_table(facts, "base_model").get("sha256", ""))
    if model_sha256 and base and base != model_sha256:
        raise PersonaError(
            f"the adapter {adapter} was trained on another base model (sha256 {base[:12]}…, "
            f"see {record_path}) than the one loaded (sha256 {model_sha256[:12]}…); probe it "
            "with the model it was trained on, or train it on this one"
        )
    trained_for = str(_table(facts, "condition").get("id", ""))
    if trained_for and trained_for != condition:
        raise PersonaError(
            f"--adapters {condition}=…: {adapter} was trained for condition {trained_for!r} "
            f"(see {record_path}), not {condition!r}"
        )
    recorded = str(_table(facts, "adapter").get("sha256", ""))
    if recorded and recorded != sha256:
        raise PersonaError(
            f"{adapter_weights(adapter)} is not the adapter its training record describes (sha256 "
            f"{sha256[:12]}…, {record_path} says {recorded[:12]}…); train it again"
        )


def _read_text(path: Path) -> str | None:
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError) as error:
        raise PersonaError(f"{path}: cannot read the training record: {error}") from None


def _table(facts: Mapping[str, Any], key: str) -> Mapping[str, Any]:
    value = facts.get(key)
    return value if isinstance(value, Mapping) else {}


def _text(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list | tuple):
        return ",".join(_text(v) for v in value)
    return str(value)


def check_adapters_load(backend: Backend, adapters: Sequence[AdapterRecord]) -> None:
    """Load each adapter once (a bad file raises ModelLoadError now, not mid-run), then
    leave the model without one."""
    if not adapters:
        return
    if not isinstance(backend, LoraAdapters):
        raise PersonaError(
            f"this session probes LoRA adapters, which the {backend.info.backend} backend "
            "cannot apply; run it with the engine they were trained for (llama.cpp on the "
            "GGUF, or MLX on the MLX model folder)"
        )
    try:
        for adapter in adapters:
            backend.use_adapter(adapter.path)
    finally:
        backend.use_adapter(None)


def check_same_adapters(header: SessionHeader) -> None:
    """Refuse to resume a session whose adapter files (the weights, and an mlx-lm folder's
    config) are gone or changed since it ran."""
    for adapter in header.adapters:
        folder = Path(adapter.path)
        files = [(adapter_weights(folder), adapter.sha256)]  # a GGUF, or an MLX folder's
        config = adapter_config(folder)
        if config is not None and adapter.config_sha256:
            files.append((config, adapter.config_sha256))
        for path, recorded in files:
            if not path.is_file():
                raise PersonaError(
                    f"session {header.id} probes condition {adapter.condition!r} with the "
                    f"LoRA adapter {path}, which is gone; put it back to resume"
                )
            found = sha256_file(path)
            if found != recorded:
                raise PersonaError(
                    f"the LoRA adapter of condition {adapter.condition!r}, {path}, has "
                    f"changed since session {header.id} ran (sha256 {found[:12]}…, recorded "
                    f"{recorded[:12]}…): its trials would come from other weights; restore "
                    "the adapter, or start a new session"
                )
