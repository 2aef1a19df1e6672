"""The machine: device probes and helpers, the memory model, torch.compile, OS helpers."""
