"""ONNX export, the parity gate, ORT optimisation and quantisation, benchmarks, and the
torch-free ONNX Runtime runtime (installed as ``moohead.export``)."""
