"""Hand-written parallel training (data parallel, ZeRO, pipeline) — later issues."""
