"""A PEFT LoRA adapter → a llama.cpp LoRA adapter GGUF (the `gguf` writer, under a second).

llama.cpp's adapter format (as its convert_lora_to_gguf.py writes it): `general.type =
"adapter"`, `adapter.type = "lora"`, `adapter.lora.alpha`, and per adapted weight
`blk.N.<attn_q|attn_k|attn_v|attn_output|ffn_gate|ffn_up|ffn_down>.weight.lora_a` = PEFT's
`lora_A` [r, in] and `.lora_b` = `lora_B` [out, r], in float32. llama.cpp scales the
product by alpha / r, as PEFT does. Where transformers un-permuted the GGUF's q/k rows
(llama's rotary layout, see hf.qk_permuted), lora_b of attn_q/attn_k is permuted back.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from persona_tui._util.atomic import atomic_output
from persona_tui.errors import TrainingError
from persona_tui.training.deps import require
from persona_tui.training.hf import permute_rows

HF_TO_GGUF: dict[str, str] = {
    "self_attn.q_proj": "attn_q",
    "self_attn.k_proj": "attn_k",
    "self_attn.v_proj": "attn_v",
    "self_attn.o_proj": "attn_output",
    "mlp.gate_proj": "ffn_gate",
    "mlp.up_proj": "ffn_up",
    "mlp.down_proj": "ffn_down",
}
_LORA_KEY = re.compile(r"(?:.*\.)?layers\.(\d+)\.(.+)\.lora_([AB])(?:\.default)?\.weight$")


def gguf_tensors(
    lora_state: Mapping[str, Any], *, permute_qk: bool, n_head: int, n_head_kv: int
) -> dict[str, Any]:
    """llama.cpp adapter tensor names → float32 numpy arrays, from a PEFT state dict."""
    np = require("numpy")
    out: dict[str, Any] = {}
    for key, tensor in lora_state.items():
        found = _LORA_KEY.match(key)
        if found is None:
            raise TrainingError(f"cannot map the adapter tensor {key!r} to llama.cpp")
        layer, module, which = found.groups()
        target = HF_TO_GGUF.get(module)
        if target is None:
            raise TrainingError(f"llama.cpp adapters have no place for {module!r} ({key})")
        array = np.ascontiguousarray(tensor.detach().cpu().float().numpy())
        if which == "B" and permute_qk and target in ("attn_q", "attn_k"):
            array = np.ascontiguousarray(
                permute_rows(array, n_head if target == "attn_q" else n_head_kv)
            )
        out[f"blk.{layer}.{target}.weight.lora_{which.lower()}"] = array
    return dict(sorted(out.items(), key=lambda item: _order(item[0])))


def write_adapter_gguf(
    path: Path,
    lora_state: Mapping[str, Any],
    *,
    architecture: str,
    alpha: float,
    permute_qk: bool,
    n_head: int,
    n_head_kv: int,
    name: str = "",
) -> Path:
    """Write the llama.cpp LoRA adapter for `lora_state` to `path` (atomically)."""
    gguf = require("gguf")
    tensors = gguf_tensors(lora_state, permute_qk=permute_qk, n_head=n_head, n_head_kv=n_head_kv)
    with atomic_output(path) as staging:
        writer = gguf.GGUFWriter(str(staging), architecture)
        writer.add_string("general.type", "adapter")
        if name:
            writer.add_name(name)
        writer.add_string("adapter.type", "lora")
        writer.add_float32("adapter.lora.alpha", float(alpha))
        for tensor_name, array in tensors.items():
            writer.add_tensor(tensor_name, array)
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_tensors_to_file()
        writer.close()
    return path


def _order(name: str) -> tuple[int, str]:
    layer = int(name.split(".")[1])
    return layer, name
