"""An MLX model folder, read without mlx: its config.json, and what a session records.

What the folder must hold is checked by `backends.detect.check_mlx_folder` (the one MLX
folder rule, with no engine import) before mlx-lm sees the path. The ModelInfo names the
weights by their sha256 (one digest for all weight files).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from persona_tui._util.hashing import sha256_file
from persona_tui._util.textdata import loads_json
from persona_tui.backend_names import MLX
from persona_tui.backends.common import installed_version, template_sha256
from persona_tui.errors import ModelLoadError
from persona_tui.values import ModelInfo


def read_model_config(folder: Path) -> dict[str, Any]:
    """The folder's config.json as a dict, with a clear error when it is broken."""
    file = folder / "config.json"
    try:
        data = loads_json(file.read_text(encoding="utf-8"), file, ModelLoadError)
    except (OSError, UnicodeDecodeError) as error:
        raise ModelLoadError(f"cannot read {file}: {error}") from error
    if not isinstance(data, dict):
        raise ModelLoadError(f"{file}: expected a JSON object")
    return data


def describe_quantization(config: dict[str, Any]) -> str:
    """A short description of the weights' format from config.json."""
    quant = config.get("quantization") or config.get("quantization_config")
    if isinstance(quant, dict):
        if "bits" in quant:
            mode = quant.get("mode", "affine")
            return f"{quant['bits']}-bit {mode}, group size {quant.get('group_size', '?')}"
        if "quant_method" in quant:
            return str(quant["quant_method"])
    dtype = config.get("torch_dtype") or config.get("dtype")
    return str(dtype) if dtype else ""


def context_length(config: dict[str, Any]) -> int:
    """The trained context (max_position_embeddings, top level or text_config); 0 if unknown."""
    for table in (config, config.get("text_config") or {}):
        value = table.get("max_position_embeddings") if isinstance(table, dict) else None
        if isinstance(value, int) and value > 0:
            return value
    return 0


def combined_sha256(files: Sequence[Path]) -> tuple[str, dict[str, str]]:
    """One digest for a model's weights, plus each file's own.

    A single file's digest is the file's own sha256 (what `sha256sum` prints); several
    files combine as the sha256 of their "name digest" lines in name order.
    """
    digests = {file.name: sha256_file(file) for file in files}
    if len(digests) == 1:
        return next(iter(digests.values())), digests
    lines = "".join(f"{name} {digest}\n" for name, digest in sorted(digests.items()))
    return hashlib.sha256(lines.encode()).hexdigest(), digests


def build_mlx_info(
    folder: Path,
    files: Sequence[Path],
    config: dict[str, Any],
    *,
    n_ctx: int,
    chat_template: str | None,
    device: str,
    n_vocab: int,
    detokenizer: str,
) -> ModelInfo:
    """What a session records about a loaded MLX folder (hashes every weight file)."""
    digest, per_file = combined_sha256(files)
    extra = {
        "mlx_version": installed_version("mlx"),
        "device": device,
        "weight_files": ", ".join(f"{name}:{sha}" for name, sha in per_file.items()),
        "n_vocab": str(n_vocab),
        "detokenizer": detokenizer,
    }
    tokenizer_file = folder / "tokenizer.json"
    if tokenizer_file.is_file():
        extra["tokenizer_sha256"] = hashlib.sha256(tokenizer_file.read_bytes()).hexdigest()
    architectures = config.get("architectures")
    if isinstance(architectures, list):
        extra["architectures"] = ", ".join(str(a) for a in architectures)
    return ModelInfo(
        backend=MLX,
        backend_version=installed_version("mlx-lm"),
        path=str(folder),
        name=folder.name,
        sha256=digest,
        size_bytes=sum(file.stat().st_size for file in files),
        architecture=str(config.get("model_type", "")),
        quantization=describe_quantization(config),
        context_length=n_ctx,
        chat_template_sha256=template_sha256(chat_template),
        extra=extra,
    )
