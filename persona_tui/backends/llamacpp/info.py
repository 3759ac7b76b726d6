"""What a session records about a GGUF model loaded with llama.cpp (its `ModelInfo`).

Built once per backend, on first use: the file's sha256 takes seconds on a large model.
The extra facts are those a result depends on: threads policy, batch plan, repacking.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from persona_tui._util.hashing import sha256_file
from persona_tui.backend_names import LLAMA_CPP
from persona_tui.backends.common import template_sha256
from persona_tui.backends.gguf_file import GGUFHeader
from persona_tui.backends.llamacpp.load import LoadedLlama
from persona_tui.values import ModelInfo


@dataclass(frozen=True)
class LlamaFacts:
    """What the backend knows of its loaded model besides the file's header."""

    n_ctx: int
    n_ctx_train: int
    n_threads: int
    governed: bool  # threads chosen per generation from the free cores
    n_vocab: int
    add_bos: bool
    eval_block: int
    version: str


def build_llama_info(
    path: Path, header: GGUFHeader, loaded: LoadedLlama, facts: LlamaFacts
) -> ModelInfo:
    """The ModelInfo of the GGUF at `path` as loaded (hashes the file)."""
    extra = {
        "n_ctx_train": str(facts.n_ctx_train),
        "n_threads": str(facts.n_threads),
        "threads_policy": "free cores, at most n_threads" if facts.governed else "fixed",
        "n_vocab": str(facts.n_vocab),
        "add_bos": str(facts.add_bos).lower(),
        "gguf_version": str(header.version),
        "tensors": str(len(header.tensors)),
        # Results depend on how prompts are batched (see batching.py): record the plan.
        "eval_block": str(facts.eval_block),
        # Repacked weights run other kernels (see load.choose_repack).
        "repack": "on" if loaded.repack.enabled else "off",
        "repack_setting": loaded.repack.setting,
        "repack_reason": loaded.repack.reason,
        "weight_buffers": ",".join(loaded.weight_buffers),
        "system_info": loaded.system_info.strip(),
    }
    file_type = header.get_int("general.file_type")
    if file_type is not None:
        extra["file_type"] = str(file_type)
    size_label = header.get_str("general.size_label")
    if size_label:
        extra["size_label"] = size_label
    return ModelInfo(
        backend=LLAMA_CPP,
        backend_version=facts.version,
        path=str(path),
        name=header.get_str("general.name") or path.stem,
        sha256=sha256_file(path),
        size_bytes=header.file_size,
        architecture=header.architecture,
        quantization=header.quantization,
        context_length=facts.n_ctx,
        chat_template_sha256=template_sha256(header.chat_template),
        extra=extra,
    )
