"""The llama.cpp backend (GGUF files through llama-cpp-python).

Reached through backends/registry.py only. `backend` is the Backend itself (loading, the
prompt cache, one-by-one generation, the thread governor, scoring); `batch_runner` its
`generate_batch`, `batched` the group decoding; `vocab` tokens and the chat template;
`info` the ModelInfo; `adapters` LoRA adapter GGUFs; `load` constructs the engine safely
(weight repacking off on builds with the crashing AMX path) and records how; `canary`
makes the first contact with an engine in a child process; `batching` derives the
evaluation plan of a prompt from the prompt itself; `sampling` the sampler chain;
`logprobs` reads next-token log-probabilities for scorers (`TokenLogprobs`). A GGUF
file's metadata is read without the engine by `backends/gguf_file.py`. llama_cpp is
imported lazily, never at import time.
"""
