"""Persona vectors on disk: a trait's directions as a llama.cpp control-vector GGUF
(`files`), the record beside it (`record`), and both loaded and found (`store`)."""
