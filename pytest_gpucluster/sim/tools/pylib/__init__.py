"""Directory put on simulated pods' PYTHONPATH; holds the fake `torch` package."""
