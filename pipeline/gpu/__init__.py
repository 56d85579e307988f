"""GPUs: what NVML reports (views.py: `GpuMemory`), what a model needs (footprint.py) and the plan
that puts workers on them (plan.py). Pure: no CUDA, no NVML here."""
