"""The llama.cpp backend (GGUF files through llama-cpp-python).

`backend` is the Backend itself; `load` constructs the engine safely (threads, weight
repacking off on builds with the crashing AMX path) and records how; `canary` makes the
first contact with an engine in a child process; `batching` derives the evaluation plan
of a prompt from the prompt itself; `logprobs` reads next-token log-probabilities for
scorers (`TokenLogprobs`). A GGUF file's metadata is read without the engine by
`backends/gguf_file.py`. llama_cpp is imported lazily, never at import time.
"""
