"""The process settings under which fpbench trains and samples on a CPU: freed memory kept for
reuse, subnormals flushed, float32 matmuls on oneDNN where it keeps them float32. Each is measured
in its docstring; ``cpu_settings`` applies them for the length of a block."""

from __future__ import annotations

import contextlib
import ctypes
import functools
import os
from pathlib import Path

import torch


@contextlib.contextmanager
def cpu_settings(device=None):
    """The process settings under which ensembles train and the runner samples: freed memory kept
    for reuse, subnormals flushed, and (on the CPU) float32 matmuls on oneDNN where it computes them
    in float32. The per-model baseline loop of ``fpbench.train.loop`` runs without them."""
    reuse_freed_memory()
    with flush_denormals(), (onednn_float32_matmuls() if on_cpu(device) else contextlib.nullcontext()):
        yield


def on_cpu(device) -> bool:
    """Whether ``device`` (None: torch's default, the CPU) is the CPU."""
    return device is None or torch.device(device).type == "cpu"


@contextlib.contextmanager
def onednn_float32_matmuls():
    """Route float32 matmuls to oneDNN while the block runs, where oneDNN keeps them float32.

    torch sends float32 mm/bmm to MKL unless ``torch.backends.mkldnn.matmul.fp32_precision`` is
    ``"bf16"``, which hands them to oneDNN and *allows* it to round the inputs to bfloat16. Whether
    oneDNN does depends on the CPU's bfloat16 matmul units: on the project's EPYC (AVX512-BF16, no
    AMX) it computes in float32 with its AVX-512 kernels, where MKL runs its AVX2 Zen kernel; 2.1-3.1x
    the GFLOP/s (one thread: (4000, 80) @ (80, 80) 530 -> 245 us, (20000, 80) @ (80, 80) 3525 -> 1120
    us). ``onednn_keeps_float32`` checks by a probe that no bfloat16 rounding happens on this CPU;
    where it would, or the flag does not exist (torch < 2.9), nothing changes. Sums over the batch
    (weight gradients) are added in another order than MKL's, so results agree with MKL's to float32
    rounding, not bit for bit. While the flag is set, torch's legacy ``get_float32_matmul_precision``
    raises (mixed APIs); it is restored when the block ends."""
    with _onednn_bf16_flag() if onednn_keeps_float32() else contextlib.nullcontext():
        yield


@functools.cache
def onednn_keeps_float32() -> bool:
    """Whether float32 matmuls under ``fp32_precision = "bf16"`` stay float32 on this CPU
    (``float32_accurate``)."""
    flags = getattr(torch.backends.mkldnn, "matmul", None)
    if not torch.backends.mkldnn.is_available() or not hasattr(flags, "fp32_precision"):
        return False
    with _onednn_bf16_flag():
        return float32_accurate(torch.matmul)


@contextlib.contextmanager
def _onednn_bf16_flag():
    """``torch.backends.mkldnn.matmul.fp32_precision = "bf16"`` while the block runs, then as before."""
    flags = torch.backends.mkldnn.matmul
    before = flags.fp32_precision
    flags.fp32_precision = "bf16"
    try:
        yield
    finally:
        flags.fp32_precision = before


def float32_accurate(matmul) -> bool:
    """Whether ``matmul`` computes float32 products to float32 accuracy. The probe's entries are
    1 + u with 0 < u < 2^-9, which bfloat16 (8 significant bits) rounds to 1: bfloat16 inputs make
    the products about 2^-9 too small, while float32 sums of at most 512 positive terms are within
    512 * 2^-24 = 2^-15 of exact. Forward, transposed (weight-gradient) and batched forms are
    probed; the tolerance is 2^-12."""
    g = torch.Generator().manual_seed(0)
    a, b = (1 + torch.rand(2, 512, 64, generator=g) * 2**-9 for _ in range(2))
    forms = {"mm": lambda mm, x, y: mm(x[0], y[0, :64]), "mm_transposed": lambda mm, x, y: mm(x[0].T, y[0]),
             "bmm": lambda mm, x, y: mm(x, y.mT)}
    for form in forms.values():
        exact = form(torch.matmul, a.double(), b.double())
        if ((form(matmul, a, b).double() - exact).abs() / exact).max() >= 2**-12:
            return False
    return True


@contextlib.contextmanager
def flush_denormals():
    """Flush float subnormals to zero while training (``torch.set_flush_denormal``), then back to
    torch's default. softplus(beta = 100) meets many: exp(beta h) is subnormal for beta h in
    [-103, -87], and subnormal arithmetic takes x86's slow path (measured inside training at quick
    scale, 2 threads: 537 us per (4000, 80) softplus, 242 us with subnormals flushed). Values below
    1.2e-38 change nothing the losses can see.

    The flag is a per-thread CPU register (MXCSR), so it is set on every thread of torch's OpenMP
    pool, not only this one (``on_every_intra_op_thread``): set on this thread alone, a pool that
    already exists keeps computing subnormals on its other threads (half of a 2-thread exp's output,
    tests/test_process.py). Where torch's OpenMP is not libgomp, it is set on this thread only."""
    on_every_intra_op_thread(lambda: torch.set_flush_denormal(True))
    try:
        yield
    finally:
        on_every_intra_op_thread(lambda: torch.set_flush_denormal(False))


def on_every_intra_op_thread(fn) -> bool:
    """Call ``fn()`` on this thread and on each thread of torch's OpenMP pool (its
    ``torch.get_num_threads()`` team), through libgomp's ``GOMP_parallel``: the threads torch's
    kernels and compiled code run on. True if it reached the pool; False (``fn`` called on this thread
    only) where torch's OpenMP runtime is not a libgomp this process has loaded."""
    gomp = _loaded_libgomp()
    if gomp is None or torch.get_num_threads() == 1:
        fn()
        return gomp is not None
    callback = _GOMP_FN(lambda _: fn())  # each thread takes the GIL to run it; ctypes releases it here
    gomp.GOMP_parallel(callback, None, torch.get_num_threads(), 0)
    return True


_GOMP_FN = ctypes.CFUNCTYPE(None, ctypes.c_void_p)


@functools.cache
def _loaded_libgomp():
    """The libgomp torch runs on, if this process has loaded it (torch's wheels bundle one in
    ``torch/lib``; other builds link the system's): opened without loading anything new."""
    torch_lib = Path(torch.__file__).parent / "lib"
    for name in [*map(str, sorted(torch_lib.glob("libgomp*.so*"))), "libgomp.so.1"]:
        try:
            gomp = ctypes.CDLL(name, mode=os.RTLD_NOLOAD | ctypes.RTLD_GLOBAL)
        except (OSError, AttributeError):  # not loaded; or no RTLD_NOLOAD (not a POSIX dlopen)
            continue
        gomp.GOMP_parallel.argtypes = [_GOMP_FN, ctypes.c_void_p, ctypes.c_uint, ctypes.c_uint]
        gomp.GOMP_parallel.restype = None
        return gomp
    return None


@functools.cache
def reuse_freed_memory() -> bool:
    """Keep freed memory in this process for reuse (glibc's ``mallopt``; elsewhere nothing changes,
    and False is returned). torch's CPU allocator is malloc: every activation of 4000 x 80 floats
    (1.3 MB) is above glibc's mmap threshold, so each iteration maps fresh pages and pays a page
    fault per 4 KB on first touch, then unmaps them. With the threshold at its maximum (32 MB) and
    trimming off, the blocks are reused: measured 12.1-12.8 ms -> 9.8-10.4 ms for one compiled DSM
    step at quick scale. The cost: the process keeps its peak heap until it exits. Done once per
    process (looking up libc runs a subprocess); later calls return the first answer."""
    import ctypes
    import ctypes.util

    name = ctypes.util.find_library("c")
    libc = ctypes.CDLL(name) if name else None
    if libc is None or not hasattr(libc, "mallopt") or not hasattr(libc, "gnu_get_libc_version"):
        return False
    m_trim_threshold, m_mmap_threshold = -1, -3  # glibc's malloc.h
    return bool(libc.mallopt(m_mmap_threshold, 32 * 1024 * 1024)) and bool(libc.mallopt(m_trim_threshold, 2**30))
