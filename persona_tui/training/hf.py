"""A GGUF's weights as a trainable float32 Hugging Face model, converted once and cached.

transformers reads the GGUF itself (`from_pretrained(folder, gguf_file=...)`, dequantizing
to float32; ~45 s for the demo model); the result is saved under the user cache keyed by the
GGUF's sha256 (`paths.cache_dir()/hf-weights/<sha256>/`), so later runs load safetensors in
a second. The copy is written to a temporary folder and renamed into place, so an
interrupted conversion never leaves a half-written cache.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

from persona_tui import paths
from persona_tui.errors import ModelLoadError
from persona_tui.training.deps import require

CACHE_FOLDER = "hf-weights"


def weights_cache(sha256: str) -> Path:
    """Where the float32 copy of the GGUF with this sha256 lives."""
    return paths.cache_dir() / CACHE_FOLDER / sha256


def load_float32_model(gguf_path: Path, sha256: str) -> Any:
    """The GGUF's model in float32 (a transformers `PreTrainedModel`), from the cache when
    it is there, else converted from the GGUF and cached."""
    torch = require("torch")
    transformers = require("transformers")
    require("accelerate")
    cached = weights_cache(sha256)
    if not (cached / "config.json").is_file():
        _convert(transformers, torch, Path(gguf_path), cached)
    model = transformers.AutoModelForCausalLM.from_pretrained(cached, dtype=torch.float32)
    return model


def _convert(transformers: Any, torch: Any, gguf_path: Path, cached: Path) -> None:
    gguf_path = gguf_path.expanduser().absolute()
    try:
        model = transformers.AutoModelForCausalLM.from_pretrained(
            gguf_path.parent, gguf_file=gguf_path.name, dtype=torch.float32
        )
    except (ValueError, KeyError, OSError, RuntimeError) as exc:
        raise ModelLoadError(
            f"transformers cannot read {gguf_path} as trainable weights: {exc}. Training "
            "needs a GGUF whose architecture transformers supports (llama, gemma3, qwen2, ...)."
        ) from exc
    # save_pretrained refuses a model loaded through the GGUF quantizer; the weights are
    # already dequantized float32, so the marker is dropped.
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    cached.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{cached.name}.", dir=cached.parent))
    try:
        model.save_pretrained(staging)
        try:
            os.replace(staging, cached)
        except OSError:
            if not (cached / "config.json").is_file():  # not another process's copy
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def qk_permuted(model: Any, gguf_path: Path) -> bool:
    """Whether transformers un-permuted the GGUF's attn_q/attn_k rows (llama's rotary
    layout, which llama.cpp's converter permutes): adapters must then be permuted back.

    Found by comparing layer 0's q_proj with the GGUF tensor, not by the architecture's name.
    """
    gguf = require("gguf")
    np = require("numpy")
    reader = gguf.GGUFReader(str(gguf_path))
    tensor = next((t for t in reader.tensors if t.name == "blk.0.attn_q.weight"), None)
    if tensor is None:
        return False
    raw = gguf.quants.dequantize(tensor.data, tensor.tensor_type)
    weight = np.asarray(raw, dtype=np.float32).reshape(
        [int(n) for n in reversed(tensor.shape.tolist())]
    )
    hf = model.get_submodule(_q_proj_name(model)).weight.detach().numpy()
    if hf.shape != weight.shape:
        return False
    if np.array_equal(hf, weight):
        return False
    heads = int(model.config.num_attention_heads)
    return bool(np.array_equal(hf, permute_rows(weight, heads, inverse=True)))


def permute_rows(weight: Any, heads: int, *, inverse: bool = False) -> Any:
    """llama.cpp's q/k row permutation (convert_hf_to_gguf `permute`), or its inverse."""
    shape = weight.shape
    half = shape[0] // heads // 2
    if inverse:
        return weight.reshape(heads, half, 2, *shape[1:]).swapaxes(1, 2).reshape(shape)
    return weight.reshape(heads, 2, half, *shape[1:]).swapaxes(1, 2).reshape(shape)


def _q_proj_name(model: Any) -> str:
    for name, _ in model.named_modules():
        if name.endswith("layers.0.self_attn.q_proj"):
            return str(name)
    raise ModelLoadError("the model has no layers.0.self_attn.q_proj to train")
