#!/usr/bin/env python3
"""Check and benchmark bragg-service on a CUDA machine in one run; ``--device cpu`` is a dry run.

    python3 scripts/gpu-check.py --report out/gpu-check.txt --json out/gpu-check.json
    python3 scripts/gpu-check.py --device cpu --quick        # the dry run the test suite runs

Sections: the CUDA-marked tests, CPU/CUDA parity in float64, render speed (eager and compiled) and
the service (bragg up --device cuda, twenty jobs). docs/performance.md (section GPU) says how to
run it on a lent GPU machine; ``--help`` lists the options.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.gpu_check.orchestrate import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
