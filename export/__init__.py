"""ONNX export, validation, ORT optimisation and runtime (installed as ``moohead.export``).

Filled in by the export issue; the package exists so the layout is fixed from the start.
"""
