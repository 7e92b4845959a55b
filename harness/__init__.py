"""harness: find the best LoRA / QLoRA fine-tuning recipe for a structured-extraction task, and ship it."""
