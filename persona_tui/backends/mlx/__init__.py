"""The MLX backend (Apple silicon, or mlx[cpu] on Linux) for MLX model folders.

`backend` is the Backend itself; `folder` checks a model folder and builds its record
without importing mlx; `tokens` maps token ids to their bytes. mlx and mlx_lm are
imported lazily, never at import time.
"""
