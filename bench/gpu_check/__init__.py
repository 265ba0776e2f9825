"""The GPU check: one prepared run that tells whether the CUDA path works, agrees with the CPU and
how fast it is (``scripts/gpu-check.py``; docs/performance.md, section GPU).

Modules: ``orchestrate`` (the driver), ``setup_env`` (finding or making an interpreter), ``section``
(one section in its own process), the sections ``cuda_tests``, ``parity_check``, ``speed`` and
``service_check``, ``cases`` (the command lines) and ``report`` (bars and the text report). The
driver, ``setup_env`` and ``report`` use the standard library only.
"""
