"""How ``nanobragg`` prepares a render in its own process: OpenMP's waiting bounded before torch
loads, and the threads of each render chosen from how busy other processes keep the cores."""

import os
import subprocess
import sys

import pytest

from sim_core import runtime


def test_openmp_waiting_is_bounded_unless_the_user_chose():
    env = {}
    runtime.openmp_environment(env)
    assert env == {"GOMP_SPINCOUNT": runtime.SPINCOUNT}
    env = {"GOMP_SPINCOUNT": "7"}
    runtime.openmp_environment(env)
    assert env == {"GOMP_SPINCOUNT": "7"}
    env = {"OMP_WAIT_POLICY": "ACTIVE"}
    runtime.openmp_environment(env)
    assert env == {"OMP_WAIT_POLICY": "ACTIVE"}


@pytest.mark.parametrize("others", [None, 0.0, 0.3, 1.0, 2.0])
def test_a_render_takes_every_core_unless_the_others_far_oversubscribe_them(others):
    total = os.cpu_count()
    assert runtime.choose_threads(others * total if others else others) == runtime.usable_cores()


def test_it_backs_off_once_the_others_far_oversubscribe_the_cores():
    cores, total = runtime.usable_cores(), os.cpu_count()
    assert runtime.choose_threads(1e9) == 1
    if cores == total and cores >= 2:
        assert runtime.choose_threads(2.0 * total + 1.0) == cores - 1


def test_an_eager_render_takes_only_the_idle_cores():
    cores, total = runtime.usable_cores(), os.cpu_count()
    assert runtime.choose_threads(None, eager=True) == cores
    assert runtime.choose_threads(0.0, eager=True) == cores
    assert runtime.choose_threads(1e9, eager=True) == 1
    if cores == total and cores >= 2:
        # one busy process: the compiled kernel keeps every core, the eager engine leaves it one
        assert runtime.choose_threads(1.0, eager=True) == cores - 1
        assert runtime.choose_threads(1.0) == cores
        assert runtime.choose_threads(float(total), eager=True) == 1


def test_the_meter_counts_other_processes_not_this_one():
    meter = runtime.CpuMeter()
    assert meter.others_busy(min_window=60) is None  # too short a window to say anything
    # this process busy for a while: not counted as other processes' work
    x = 0
    end = runtime.time.monotonic() + 0.4
    while runtime.time.monotonic() < end:
        x += 1
    busy = meter.others_busy()
    if busy is None:
        pytest.skip("no /proc/stat here")
    assert 0.0 <= busy <= os.cpu_count()
    meter.mark()
    # the latest mark is too recent: the window is the one before it
    assert meter.others_busy(min_window=0.3) is not None


def test_the_meter_leaves_out_the_guest_process():
    """The server's client (whose start-up falls in the window) is not other processes' work."""
    meter = runtime.CpuMeter()
    child = subprocess.Popen([sys.executable, "-c", "import time\nend = time.monotonic() + 0.6\n"
                              "while time.monotonic() < end: pass\ninput()"],
                             stdin=subprocess.PIPE)
    try:
        deadline = runtime.time.monotonic() + 60
        while runtime._process_seconds(child.pid) < 0.3 and runtime.time.monotonic() < deadline:
            runtime.time.sleep(0.05)
        with_child = meter.others_busy()
        meter.guest = child.pid
        without = meter.others_busy()
        spent = runtime._process_seconds(child.pid)
    finally:
        child.communicate(b"\n", timeout=60)
    if with_child is None:
        pytest.skip("no /proc/stat here")
    assert spent >= 0.3
    # the two readings are a moment apart: their difference is the child's CPU over the window
    assert with_child - without > 0.0
    assert without <= with_child


def test_the_policy_sets_torch_threads_and_respects_omp_num_threads():
    code = """
import os, torch
from sim_core import runtime
runtime.set_thread_policy(lambda eager: 1)
print(runtime.apply_thread_policy(), torch.get_num_threads())
"""
    env = {k: v for k, v in os.environ.items() if k != "OMP_NUM_THREADS"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                         timeout=300)
    assert out.stdout.split() == ["1", "1"], out.stderr
    fixed = subprocess.run([sys.executable, "-c", code], env=dict(env, OMP_NUM_THREADS="2"),
                           capture_output=True, text=True, timeout=300)
    assert fixed.stdout.split() == ["None", "2"], fixed.stderr
