"""Model backends, reached through `registry` (engines register there; their packages
`llamacpp`, `mlx` and `openai` import their engine lazily, never here). Shared by all:
the protocols (`base`), local engines' common code (`local`), helpers (`common`,
`stream`, `cpu`, `cpu_load`), what a model is (`detect`), GGUF files (`gguf_file`) and
each engine's adapter files (`adapter_files`)."""
