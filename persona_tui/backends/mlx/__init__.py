"""The MLX backend (Apple silicon, or mlx[cpu] on Linux) for MLX model folders.

Reached through backends/registry.py only. `backend` is the Backend itself (loading,
chat, one-by-one generation, scoring, adapters); `batch_runner` its `generate_batch`,
`batched` the batched decoding on mlx-lm's BatchGenerator; `activations` its hidden
states and steering (HiddenStates, Steering), `steering` the hooks on the model's layers
they go through (vectors added, outputs captured); `prompt_cache` the prompt cache;
`sampling` the sampler and repeat penalty; `adapters` mlx-lm LoRA folders swapped in and
out; `folder` reads a model folder's config and builds its record without mlx (what a
folder must hold is backends/detect.py's); `tokens` maps token ids to their bytes;
`logprobs` the scoring scope. mlx and mlx_lm are imported lazily, never at import time.
"""
