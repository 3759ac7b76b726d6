"""Probing mlx-lm LoRA adapters on the real MLX engine (mlx[cpu]) and the tiny MLX model.

Adapters trained a few steps on the tiny model (training/mlx_study.py) change its output;
the MLX backend applies them as mlx-lm's own `load(folder, adapter_path=...)` does, switches
between adapters of different ranks and layers without reloading, and gives the untouched
model's exact numbers again without one. A session records each adapter's
adapters.safetensors sha256, and `persona-tui study` on an MLX folder trains, probes
(sampled and likelihood options) and reports.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from persona_tui._util.hashing import sha256_file

pytest.importorskip("mlx_lm", reason="the MLX backend needs: pip install 'persona-tui[mlx]'")

from persona_tui.backends.base import BatchDone, GenerationRequest, LoraAdapters
from persona_tui.backends.mlx.backend import MlxBackend
from persona_tui.errors import ModelLoadError, PersonaError
from persona_tui.run.adapters import study_adapters
from persona_tui.run.lifecycle import create_session, resume_session
from persona_tui.run.options import score_options
from persona_tui.run.plan import RunOptions
from persona_tui.run.runner import Runner
from persona_tui.scenario.model import Scenario
from persona_tui.scenario.parse import parse_scenario
from persona_tui.session.read import read_session_file
from persona_tui.training.study import train_study
from persona_tui.values import SamplingParams
from tests.mlx_fixture import write_tiny_mlx
from tests.scenario_text import STUDY_OPTIONS
from tests.unit.test_mlx_training import PARAMS, STUDY

TEXT = STUDY + STUDY_OPTIONS
PROMPT = "User: what are you?\n\nAssistant:"
GREEDY = SamplingParams(temperature=0.0, top_k=1, repeat_penalty=1.0, max_tokens=10)
SAMPLED = SamplingParams(temperature=0.9, top_k=0, top_p=0.95, repeat_penalty=1.1, max_tokens=10)


# The default adapter folder is OUT/<condition>/replicate-<k>/ now; finding it is run/adapters.py's
# (the lead's part of issue 22).


@pytest.fixture(scope="module", autouse=True)
def _no_compile() -> None:
    import mlx.core as mx

    mx.disable_compile()


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(the tiny MLX folder, a study folder with learns/ and plays/ trained on it, and a
    third adapter `narrow/mlx` of another rank, scale, layers and projections)."""
    root = tmp_path_factory.mktemp("mlx-adapters")
    model = write_tiny_mlx(root / "tiny-mlx")
    scenario = parse_scenario(TEXT, str(root / "tiny-finetune.toml"))
    result = train_study(scenario, model, root / "study", PARAMS)
    assert result.complete
    _narrow(root / "study" / "learns" / "replicate-1" / "mlx", root / "narrow" / "mlx")
    return model, root / "study"


def _narrow(source: Path, target: Path) -> None:
    """An mlx-lm adapter of rank 2 on the last layer's q and v projections, cut from
    `source` (a valid adapter of another shape, as mlx-lm would have trained it)."""
    import mlx.core as mx

    config = json.loads((source / "adapter_config.json").read_text())
    last = config["num_layers"] - 1
    keys = ["self_attn.q_proj", "self_attn.v_proj"]
    config["num_layers"] = 1
    config["lora_parameters"] |= {"rank": 2, "scale": 3.0, "keys": keys}
    weights = mx.load(str(source / "adapters.safetensors"))
    assert isinstance(weights, dict)
    kept: dict[str, Any] = {}
    for key in keys:
        prefix = f"model.layers.{last}.{key}"
        kept[f"{prefix}.lora_a"] = weights[f"{prefix}.lora_a"][:, :2] * 4
        kept[f"{prefix}.lora_b"] = weights[f"{prefix}.lora_b"][:2, :] * 4
    target.mkdir(parents=True)
    mx.save_safetensors(str(target / "adapters.safetensors"), kept)
    (target / "adapter_config.json").write_text(json.dumps(config))


@pytest.fixture(scope="module")
def model(trained: tuple[Path, Path]) -> Path:
    return trained[0]


@pytest.fixture(scope="module")
def adapters(trained: tuple[Path, Path]) -> dict[str, Path]:
    study = trained[1]
    return {
        "learns": study / "learns" / "replicate-1" / "mlx",
        "plays": study / "plays" / "replicate-1" / "mlx",
        "narrow": study.parent / "narrow" / "mlx",
    }


@pytest.fixture
def backend(model: Path) -> Iterator[MlxBackend]:
    loaded = MlxBackend.load(model, max_batch=2)
    yield loaded
    loaded.close()


@pytest.fixture
def scenario() -> Scenario:
    return parse_scenario(TEXT, "tiny-finetune.toml")


def outputs(backend: MlxBackend) -> dict[str, Any]:
    """Everything that runs the model: greedy and sampled text, a batch, scored rows."""
    greedy = backend.generate(GenerationRequest(PROMPT, 1, GREEDY))
    sampled = backend.generate(GenerationRequest(PROMPT, 7, SAMPLED))
    batch = [
        GenerationRequest(PROMPT, 7, SAMPLED),
        GenerationRequest("User: hello world?\n\nAssistant:", 8, SAMPLED),
    ]
    done = {
        e.index: e.result.text for e in backend.generate_batch(batch) if isinstance(e, BatchDone)
    }
    with backend.logprob_scope() as scope:
        tokens = scope.tokenize(PROMPT)
        row = scope.evaluate(tokens).copy()
        continuation = scope.continuation(PROMPT, tokens, " you are the bully.")
        option = scope.sequences([continuation], 512)[0]
    return {
        "greedy": greedy.text,
        "sampled": sampled.text,
        "batch": [done[0], done[1]],
        "row": row.tobytes(),
        "option": option,
    }


def with_model(folder: Path, model: Any) -> MlxBackend:
    """A backend on `folder` whose model is `model` (e.g. mlx-lm's own load with an adapter)."""
    other = MlxBackend.load(folder, max_batch=2)
    other._model = model
    return other


def mlx_lm_model(folder: Path, adapter: Path | None) -> Any:
    import mlx_lm

    loaded: Any = mlx_lm.load(str(folder), adapter_path=None if adapter is None else str(adapter))
    return loaded[0]


def greedy_tokens(model: Any, tokens: list[int]) -> list[int]:
    import mlx.core as mx
    from mlx_lm.generate import generate_step
    from mlx_lm.sample_utils import make_sampler

    steps = generate_step(mx.array(tokens), model, max_tokens=10, sampler=make_sampler(temp=0))
    return [int(token) for token, _ in steps]


# --- the backend ----------------------------------------------------------------------------


def test_each_adapter_gives_mlx_lm_s_own_output(
    backend: MlxBackend, model: Path, adapters: dict[str, Path]
) -> None:
    assert isinstance(backend, LoraAdapters)
    base = outputs(backend)
    tokens = backend._tokenize(PROMPT)
    for name, adapter in adapters.items():
        backend.use_adapter(str(adapter))
        assert backend.active_adapter == str(adapter)
        mine = outputs(backend)
        reference = mlx_lm_model(model, adapter)
        assert greedy_tokens(backend._model, tokens) == greedy_tokens(reference, tokens), name
        other = with_model(model, reference)
        try:
            assert mine == outputs(other), name
        finally:
            other.close()
        assert mine["row"] != base["row"], name
        assert mine["option"] != base["option"], name
        if name != "narrow":  # trained adapters change what the model says
            assert mine["greedy"] != base["greedy"] and mine["sampled"] != base["sampled"]
    # The three are three different models.
    rows = set()
    for adapter in adapters.values():
        backend.use_adapter(str(adapter))
        rows.add(outputs(backend)["row"])
    assert len(rows) == 3


def test_no_adapter_is_the_untouched_model_byte_for_byte(
    backend: MlxBackend, model: Path, adapters: dict[str, Path]
) -> None:
    from mlx.utils import tree_flatten

    fresh = MlxBackend.load(model, max_batch=2)
    try:
        expected = outputs(fresh)
        plain = dict(tree_flatten(fresh._model.parameters()))
    finally:
        fresh.close()
    for adapter in (adapters["learns"], adapters["narrow"], adapters["plays"]):
        backend.use_adapter(str(adapter))
        outputs(backend)
    backend.use_adapter(None)
    assert backend.active_adapter is None
    assert outputs(backend) == expected
    now = dict(tree_flatten(backend._model.parameters()))
    assert sorted(now) == sorted(plain)  # no LoRA layer left behind
    assert all(bytes(now[k]) == bytes(plain[k]) for k in plain)
    # mlx-lm's own model without an adapter too.
    reference = with_model(model, mlx_lm_model(model, None))
    try:
        assert outputs(reference) == expected
    finally:
        reference.close()


def test_switching_adapters_forgets_the_prompt_cache(
    backend: MlxBackend, model: Path, adapters: dict[str, Path]
) -> None:
    learns, plays = adapters["learns"], adapters["plays"]
    fresh: dict[Path | None, dict[str, Any]] = {}
    for adapter in (None, learns, plays):
        other = MlxBackend.load(model, max_batch=2)
        try:
            if adapter is not None:
                other.use_adapter(str(adapter))
            fresh[adapter] = outputs(other)
        finally:
            other.close()
    assert len({f["row"] for f in fresh.values()}) == 3  # three different models
    first = None
    for adapter in (learns, plays, None, learns, learns, plays):
        backend.use_adapter(None if adapter is None else str(adapter))
        got = outputs(backend)
        assert got == fresh[adapter], adapter
        first = first or got
    assert first == fresh[learns]
    # The same adapter again keeps the prompt cache; another one forgets it.
    greedy = GenerationRequest(PROMPT, 1, GREEDY)
    backend.use_adapter(str(learns))
    backend.generate(greedy)
    assert backend.generate(greedy).prompt_tokens_evaluated == 1
    backend.use_adapter(str(learns))
    assert backend.generate(greedy).prompt_tokens_evaluated == 1
    for adapter in (str(plays), None):
        backend.use_adapter(adapter)
        switched = backend.generate(greedy)
        assert switched.prompt_tokens_evaluated == switched.prompt_tokens


def layer_outputs(model: Any, tokens: list[int]) -> list[Any]:
    """Each layer's output (numpy float64, (L, D)) from a plain forward written out here:
    the embedding, then each layer with the causal mask, on a model no hook touched."""
    import mlx.core as mx
    import numpy as np
    from mlx_lm.models.base import create_attention_mask

    h = model.model.embed_tokens(mx.array([tokens]))
    mask = create_attention_mask(h, None)
    outputs = []
    for layer in model.layers:
        h = layer(h, mask, None)
        outputs.append(np.array(h[0].astype(mx.float32), dtype=np.float64))
    return outputs


def test_hidden_states_and_steering_see_the_adapter(
    backend: MlxBackend, model: Path, adapters: dict[str, Path]
) -> None:
    """With an adapter applied the layers' outputs are mlx-lm's adapter model's (a plain
    forward of `load(folder, adapter_path=...)`), steering still adds exactly its vector,
    and taking both off gives the untouched numbers back."""
    import numpy as np

    tokens = backend._tokenize(PROMPT)
    continuation = backend._tokenize("you are the bully")[1:]
    base = backend.hidden_states(tokens, [continuation], [0, 1])
    backend.use_adapter(str(adapters["learns"]))
    mine = backend.hidden_states(tokens, [continuation], [0, 1])
    reference = layer_outputs(mlx_lm_model(model, adapters["learns"]), tokens + continuation)
    n = len(tokens)
    for layer in (0, 1):
        assert np.abs(mine.prompt_last[layer] - reference[layer][n - 1]).max() < 1e-5
        assert np.abs(mine.means[0, layer] - reference[layer][n:].mean(axis=0)).max() < 1e-5
        assert np.abs(mine.means[0, layer] - base.means[0, layer]).max() > 1e-4
    vector = np.linspace(-2.0, 2.0, backend.n_embd)
    backend.use_steering({1: vector})
    steered = backend.hidden_states(tokens, [continuation], [0, 1])
    assert np.array_equal(steered.prompt_last[0], mine.prompt_last[0])
    assert np.abs(steered.prompt_last[1] - mine.prompt_last[1] - vector).max() < 1e-5
    assert np.abs(steered.means[0, 1] - mine.means[0, 1] - vector).max() < 1e-5
    backend.use_steering(None)
    backend.use_adapter(None)
    again = backend.hidden_states(tokens, [continuation], [0, 1])
    assert np.array_equal(again.prompt_last, base.prompt_last)
    assert np.array_equal(again.means, base.means)


def test_a_bad_adapter_folder_is_a_load_error_naming_the_file(
    backend: MlxBackend, adapters: dict[str, Path], trained: tuple[Path, Path], tmp_path: Path
) -> None:
    before = outputs(backend)
    good = adapters["learns"]

    def copy(name: str) -> Path:
        folder = tmp_path / name
        shutil.copytree(good, folder)
        return folder

    no_config = copy("no-config")
    (no_config / "adapter_config.json").unlink()
    no_weights = copy("no-weights")
    (no_weights / "adapters.safetensors").unlink()
    bad_json = copy("bad-json")
    (bad_json / "adapter_config.json").write_text("{not json")
    no_rank = copy("no-rank")
    config = json.loads((no_rank / "adapter_config.json").read_text())
    del config["lora_parameters"]["rank"]
    (no_rank / "adapter_config.json").write_text(json.dumps(config))
    truncated = copy("truncated")
    data = (truncated / "adapters.safetensors").read_bytes()
    (truncated / "adapters.safetensors").write_bytes(data[: len(data) // 2])
    garbage = copy("garbage")
    (garbage / "adapters.safetensors").write_bytes(b"\x00not safetensors at all")
    other_rank = copy("other-rank")  # the config says rank 4, the weights are rank 8
    config = json.loads((other_rank / "adapter_config.json").read_text())
    config["lora_parameters"]["rank"] = 4
    (other_rank / "adapter_config.json").write_text(json.dumps(config))
    gguf = tmp_path / "adapter.gguf"
    gguf.write_bytes(b"GGUF")
    cases = [
        (tmp_path / "missing", tmp_path / "missing", "does not exist"),
        (no_config, no_config, "has no adapter_config.json"),
        (no_weights, no_weights, "has no adapters.safetensors"),
        (bad_json, bad_json / "adapter_config.json", "is not readable JSON"),
        (no_rank, no_rank / "adapter_config.json", r"lora_parameters.rank must be a number"),
        (truncated, truncated / "adapters.safetensors", "cannot be read as safetensors"),
        (garbage, garbage / "adapters.safetensors", "cannot be read as safetensors"),
        (other_rank, other_rank / "adapters.safetensors", "does not fit this model"),
        (gguf, gguf, "is a llama.cpp LoRA adapter GGUF"),
    ]
    for bad, named, says in cases:
        backend.use_adapter(str(good))
        with pytest.raises(ModelLoadError, match=says) as caught:
            backend.use_adapter(str(bad))
        assert str(named) in str(caught.value), bad
        assert "train" in str(caught.value)  # and the fix
        assert backend.active_adapter is None
        assert outputs(backend) == before, bad
    backend.use_adapter(str(good / "adapters.safetensors"))  # a file of the folder names it
    assert backend.active_adapter == str(good)


# --- finding and recording adapters, the runner ---------------------------------------------


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_study_adapters_finds_mlx_folders_and_names_the_wrong_engine(
    backend: MlxBackend, scenario: Scenario, trained: tuple[Path, Path], tmp_path: Path
) -> None:
    model, study = trained
    sha = backend.info.sha256
    records = study_adapters(scenario, model, sha, folder=study)  # train's folder, inferred
    assert [r.condition for r in records] == ["learns", "plays"]
    learns = records[0]
    weights = study / "learns" / "replicate-1" / "mlx" / "adapters.safetensors"
    assert learns.path == str(study / "learns" / "replicate-1" / "mlx")
    assert learns.sha256 == _sha256(weights) and learns.size_bytes == weights.stat().st_size
    assert learns.base_model_sha256 == sha and learns.steps == 4
    assert (
        learns.training_record == (study / "learns" / "replicate-1" / "training.toml").read_text()
    )
    # --adapters: the condition folder (its training runs), or one run: a replicate folder,
    # the mlx folder, or one of its files (replicate 0).
    given = study_adapters(scenario, model, sha, {"learns": study / "learns"}, ["learns"])
    assert given == records[:1] and learns.replicate == 1
    for where in (
        study / "learns" / "replicate-1",
        study / "learns" / "replicate-1" / "mlx",
        weights,
    ):
        given = study_adapters(scenario, model, sha, {"learns": where}, ["learns"], backend="mlx")
        assert given == (dataclasses.replace(learns, replicate=0),)
    # The other engine's adapter, either way round, says which engine needs which file.
    gguf_study = tmp_path / "gguf"
    (gguf_study / "learns").mkdir(parents=True)
    (gguf_study / "learns" / "adapter.gguf").write_bytes(b"GGUF")
    with pytest.raises(PersonaError, match=r"is a llama\.cpp LoRA adapter GGUF") as caught:
        study_adapters(scenario, model, sha, {"learns": gguf_study / "learns"}, ["learns"])
    message = str(caught.value)
    assert "loaded with mlx, which needs an mlx-lm adapter folder (adapters.safetensors" in message
    with pytest.raises(PersonaError, match="is an mlx-lm adapter folder"):
        study_adapters(scenario, model, "", folder=study, backend="llama.cpp")
    # Incomplete or changed since training.
    broken = tmp_path / "broken"
    shutil.copytree(study, broken)
    (broken / "plays" / "replicate-1" / "mlx" / "adapter_config.json").unlink()
    with pytest.raises(PersonaError, match=r"adapter_config.json is missing") as caught:
        study_adapters(scenario, model, sha, folder=broken)
    assert str(broken / "plays" / "replicate-1" / "mlx" / "adapter_config.json") in str(
        caught.value
    )
    shutil.copy(
        study / "plays" / "replicate-1" / "mlx" / "adapter_config.json",
        broken / "plays" / "replicate-1" / "mlx",
    )
    changed = broken / "plays" / "replicate-1" / "mlx" / "adapters.safetensors"
    changed.write_bytes(changed.read_bytes() + b"\0")
    with pytest.raises(PersonaError, match="not the adapter its training record describes"):
        study_adapters(scenario, model, sha, folder=broken)


def test_a_session_probes_and_records_mlx_adapters(
    backend: MlxBackend, scenario: Scenario, trained: tuple[Path, Path], tmp_path: Path
) -> None:
    model = trained[0]
    study = tmp_path / "study"
    shutil.copytree(trained[1], study)
    records = study_adapters(scenario, model, backend.info.sha256, folder=study)
    store = create_session(
        scenario, backend, RunOptions(), tmp_path / "s.toml", adapters_folder=study
    )
    assert Runner(scenario, backend, store).run(lambda event: None) == "complete"
    assert score_options(scenario, backend, store).complete
    session = store.session
    store.close()
    header = read_session_file(tmp_path / "s.toml").header
    assert header.adapters == records
    # Each condition's trials come from its own weights.
    for trial in (t for t in session.trials if t.sample == 0):
        adapter = {
            "learns": study / "learns" / "replicate-1" / "mlx",
            "plays": study / "plays" / "replicate-1" / "mlx",
        }
        other = MlxBackend.load(model)
        try:
            if trial.condition in adapter:
                other.use_adapter(str(adapter[trial.condition]))
            request = GenerationRequest(trial.prompt, trial.seed, header.sampling, header.plan.stop)
            assert other.generate(request).text == trial.response, trial.condition
        finally:
            other.close()
    cells = {(c.condition, c.probe): c for c in session.option_cells}
    assert (
        cells[("learns", "what")].options[0].logprob != cells[("base", "what")].options[0].logprob
    )

    def load(ref: str) -> MlxBackend:
        return MlxBackend.load(Path(ref))

    _, again, resumed = resume_session(tmp_path / "s.toml", load)
    again.close()
    resumed.close()
    # The config's scale changes the model as the weights do: recorded, checked on resume.
    config = study / "learns" / "replicate-1" / "mlx" / "adapter_config.json"
    assert header.adapters[0].config_sha256 == sha256_file(config)
    original = config.read_text()
    settings = json.loads(original)
    settings["lora_parameters"]["scale"] = settings["lora_parameters"]["scale"] * 2
    config.write_text(json.dumps(settings))
    with pytest.raises(PersonaError, match=r"'learns'.*adapter_config.json, has changed since"):
        resume_session(tmp_path / "s.toml", load)
    config.write_text(original)
    weights = study / "plays" / "replicate-1" / "mlx" / "adapters.safetensors"
    weights.write_bytes(weights.read_bytes() + b"\0")
    with pytest.raises(PersonaError, match=r"'plays'.*has changed since session"):
        resume_session(tmp_path / "s.toml", load)
    shutil.rmtree(study / "plays" / "replicate-1")
    with pytest.raises(PersonaError, match=r"'plays'.*which is gone"):
        resume_session(tmp_path / "s.toml", load)


# --- the commands --------------------------------------------------------------------------


def test_run_with_adapters_on_mlx_records_their_sha256(
    trained: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from persona_tui.cli.main import main

    model, study = trained
    scenario_file = tmp_path / "tiny-finetune.toml"
    scenario_file.write_text(TEXT, encoding="utf-8")
    base = ["run", str(scenario_file), "--model", str(model), "--samples", "1"]
    gguf = tmp_path / "gguf" / "learns"
    gguf.mkdir(parents=True)
    (gguf / "adapter.gguf").write_bytes(b"GGUF")
    assert main([*base, "--adapters", f"learns={gguf},plays={study / 'plays'}"]) == 2
    assert "needs an mlx-lm adapter folder" in capsys.readouterr().err
    adapters = f"learns={study / 'learns'},plays={study / 'plays' / 'replicate-1' / 'mlx'}"
    out = tmp_path / "s.toml"
    assert main([*base, "--adapters", adapters, "--out", str(out)]) == 0
    capsys.readouterr()
    header = read_session_file(out).header
    assert header.model.backend == "mlx"
    assert [(a.condition, a.sha256) for a in header.adapters] == [
        (name, _sha256(study / name / "replicate-1" / "mlx" / "adapters.safetensors"))
        for name in ("learns", "plays")
    ]


def test_study_on_an_mlx_folder_trains_probes_and_reports(
    model: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from persona_tui.cli.main import main

    monkeypatch.setenv("PERSONA_TUI_HOME", str(tmp_path / "home"))
    scenario_file = tmp_path / "tiny-finetune.toml"
    scenario_file.write_text(TEXT, encoding="utf-8")
    out = tmp_path / "study"
    argv = ["study", str(scenario_file), "--model", str(model), "-o", str(out)]
    argv += ["--max-steps", "2", "--batch-size", "2", "--lr", "0.01"]
    assert main(argv) == 0
    captured = capsys.readouterr()
    for phase in ("1/3 training", "2/3 probing", "3/3 report"):
        assert phase in captured.err
    assert "learns: complete (2/2 steps" in captured.err
    assert "complete: 6/6 trials" in captured.err and "options complete: 3/3" in captured.err
    assert "framing contrasts in log-odds" in captured.out
    session = read_session_file(out / "session-1-run.toml")
    assert session.header.model.backend == "mlx"
    assert [a.path for a in session.header.adapters] == [
        str(out / "learns" / "replicate-1" / "mlx"),
        str(out / "plays" / "replicate-1" / "mlx"),
    ]
    assert len(session.trials) == 6 and len(session.option_cells) == 3
    assert main(argv) == 0  # again: nothing to train or probe; the same report
    again = capsys.readouterr()
    assert "already-trained" in again.err and "resuming" in again.err
    assert again.out == captured.out


def test_the_trainers_write_the_files_the_backends_apply() -> None:
    from persona_tui.backends.adapter_files import GGUF_ADAPTER, MLX_ADAPTER
    from persona_tui.training.mlx_lora import MLX_ADAPTER_CONFIG, MLX_ADAPTER_FILE
    from persona_tui.training.mlx_study import MLX_FOLDER
    from persona_tui.training.record import ADAPTER_FILE

    assert (
        MLX_ADAPTER.weights,
        MLX_ADAPTER.config,
        MLX_ADAPTER.folder,
    ) == (MLX_ADAPTER_FILE, MLX_ADAPTER_CONFIG, MLX_FOLDER)
    assert GGUF_ADAPTER.weights == ADAPTER_FILE
