"""LoRA fine-tunes per framing (issue 12): data, weights, training, adapters, records.

The heavy libraries of the `train` extra (torch, transformers, peft, accelerate, gguf) are
imported inside the functions that need them (`deps.require_training`), so importing this
package costs nothing. The entry point is `study.train_study`.
"""
