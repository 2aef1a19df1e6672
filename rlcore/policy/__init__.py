"""The policy: networks, the policy file, ONNX export and the torch-free controller."""
