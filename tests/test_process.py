"""The CPU process settings reach every thread torch computes on: subnormals flushed on each thread
of an OpenMP pool that existed before the setting (the flag is a per-thread register)."""

import subprocess
import sys
import textwrap

import pytest
import torch

from fpbench.train import process

# exp(-100) = 3.7e-44 is a float32 subnormal: the share of nonzero outputs is the share of the
# tensor computed on threads that do not flush subnormals. The pool exists before any flag is set.
SCRIPT = textwrap.dedent("""
    import torch
    from fpbench.train import process
    torch.set_num_threads(2)
    x = torch.full((48000, 80), -100.0)
    nonzero = lambda: float((torch.exp(x) != 0).float().mean())
    print("default", nonzero())
    torch.set_flush_denormal(True)
    print("this_thread_only", nonzero())
    torch.set_flush_denormal(False)
    with process.flush_denormals():
        print("flushed", nonzero())
    print("after", nonzero())
""")


def test_flush_denormals_reaches_every_thread_of_an_existing_pool():
    if process._loaded_libgomp() is None:
        pytest.skip("torch's OpenMP runtime here is not libgomp")
    if not torch.set_flush_denormal(True):
        pytest.skip("this CPU cannot flush subnormals")
    torch.set_flush_denormal(False)
    out = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, check=True).stdout
    share = {k: float(v) for k, v in (line.split() for line in out.splitlines())}
    assert share["default"] == 1.0  # nothing flushed
    assert 0.0 < share["this_thread_only"] < 1.0  # torch's own call: the other thread still computes subnormals
    assert share["flushed"] == 0.0  # every thread flushes
    assert share["after"] == 1.0  # and every thread is back to torch's default


def test_on_every_intra_op_thread_calls_once_per_thread_of_the_team():
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        calls = []
        reached = process.on_every_intra_op_thread(lambda: calls.append(1))
        assert len(calls) == (2 if reached else 1)
    finally:
        torch.set_num_threads(threads)
