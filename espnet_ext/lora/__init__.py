"""espnet_ext.lora: per-language LoRA adapters mixed per sample.

- `bank`: LoRABankLinear, the layer (y = W x + sum_k w[b,k] (alpha/r) B_k A_k x) and its routing plans;
- `inject`: wrapping a model's linears by name pattern, routing/merging helpers, counts, state dicts;
- `adapter_files`: one adapter per directory (adapter_config.json + adapter_model.safetensors).

Nothing here knows what a language means: adapters are names, routing weights are columns.
"""
