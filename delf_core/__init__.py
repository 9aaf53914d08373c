"""delf_core: the DELF/DELG pipeline library (plain Python and TensorFlow, no orchestrator)."""

__version__ = "0.1.0"
