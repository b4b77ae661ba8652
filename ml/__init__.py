"""fedota.ml: what a model is, shared by the coordinator and the device.

Subpackages are imported on use (importing `fedota.ml` loads nothing heavy):
`checkpoint` (safetensors files with the model's description), `lm` (the byte LM, its KV-cache
pool and generation engine), `quant` (int8 / int4 weight quantization), `minilm` (the
all-MiniLM-L6-v2 sentence-embedding adapter).
"""

__all__ = ["checkpoint", "lm", "minilm", "quant"]
