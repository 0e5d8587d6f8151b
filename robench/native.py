"""CPU kernels in C beside their torch paths: building, loading and running them.

On the CPU some hot paths are dozens of torch operators, each a full pass over a batch's memory
(the random hash of :class:`robench.rng.BatchRNG`: about 25 integer operators per value). A loop
in C does the same arithmetic in registers and touches memory once. The kernels
(``robench/csrc/cpu_kernels.c``) are compiled on first use with the system C compiler
(``$CC``, else ``cc``) for this machine's processor, kept in robench's cache directory
(``$ROBENCH_CACHE/kernels``, by default ``~/.cache/robench/kernels``) under a name that hashes
the source, the compiler and the processor's features, and called through ctypes, which releases the
GIL, so that a call's rows are shared among ``torch.get_num_threads()`` threads
(:func:`parallel`). Each kernel's Python entry point is in :mod:`robench.cpu_kernels`.

Where there is no compiler, or the compiler or loader fails, one warning is logged and the torch
paths serve for the rest of the process; ``ROBENCH_FUSED=0`` turns these kernels off as it does
the GPU ones.
"""

from __future__ import annotations

import ctypes
import hashlib
import logging
import os
import platform
import shlex
import subprocess
import tempfile
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import torch

logger = logging.getLogger(__name__)

SOURCE = Path(__file__).with_name("csrc") / "cpu_kernels.c"
FLAGS = ("-O3", "-march=native", "-std=c99", "-ffp-contract=off", "-fno-trapping-math", "-shared", "-fPIC")
LIBRARIES = ("-lm",)
# below this many elements a call runs on the calling thread (a hand-off costs some 20 us)
_PARALLEL_MIN = 1 << 15
# parallel's chunks: at most this many a thread, each of at least _CHUNK_MIN_COST elements. The
# kernels that stream their output (pixelate, jpeg_compression; their cost is their output) decide
# by each call's share against 2^22 floats (STREAM_MIN_FLOATS in cpu_kernels.c), so chunks that
# large keep the decision the call as a whole would take.
_CHUNKS_PER_THREAD = 4
_CHUNK_MIN_COST = 1 << 22

_c_int64, _c_int, _p = ctypes.c_int64, ctypes.c_int, ctypes.c_void_p
_SIGNATURES = {
    "robench_draw": (_p, _c_int64, _c_int64, _c_int64, _c_int64, _p, _p, _c_int64, _c_int64, _c_int, _p, _p),
    "robench_noise": (_c_int, _p, _p, _c_int64, _p, _p, _p, _c_int64, _c_int64, _c_int64),
    "robench_pixelate": (_p, _p, _c_int64, _c_int64, _c_int64, _c_int64, _c_int64, _c_int64, *(_p,) * 8),
    "robench_jpeg": (_p, _p, _c_int64, _c_int64, _c_int64, _c_int64, _p, _p, _p),
    "robench_zoom_total": (_p, _p, _c_int64, _c_int64, _c_int64, _c_int64, _c_int64, _p, _p, ctypes.c_float),
    "robench_hsv": (_c_int, _p, _p, _p, _p, _c_int64, _c_int64, _c_int64),
    "robench_contrast": (_p, _p, _p, _p, _c_int64, _c_int64, _c_int64, _c_int64),
    "robench_plasma_maps": (_p, _c_int64, _c_int64, _p, _c_int64, _c_int64, _c_int64, _c_int64, _c_int64, _p),
    "robench_fog": (_p, _p, _p, _p, _c_int64, _c_int64, _c_int64, _c_int64),
    "robench_gaussian_blur": (_p, _p, _p, _p, _p, _p, _p, _c_int64, _c_int64, _c_int64, _c_int64, _c_int64,
                              _c_int64, _c_int64),
    "robench_gaussian_blur_f64": (_p, _p, _p, _p, _p, _p, _p, _c_int64, _c_int64, _c_int64, _c_int64, _c_int64,
                                  _c_int64, _c_int64),
    "robench_glass_copies": (_p, _p, _c_int64, _p, _p, _c_int64, _c_int64, _c_int64, _c_int64, _c_int64, _c_int64),
    "robench_elastic_grid": (_p, _p, _p, _c_int64, _c_int64, _c_int64, _c_int64),
    "robench_motion_blur": (_p, _p, _p, _p, _p, _c_int64, _c_int64, _c_int64, _c_int64, _c_int64, _c_int64, _c_int),
    "robench_defocus": (_p, _p, _p, _p, _c_int64, _p, _c_int64, _p, _c_int64, ctypes.c_float, _p, _p, _p,
                        _c_int64, _c_int64, _c_int64, _c_int64, _c_int64),
    "robench_frost": (*(_p,) * 11, _c_int64, _c_int64, _c_int64),
    "robench_snow": (_p, _p, _p, _p, _p, _c_int64, _c_int64, _c_int64, _c_int64),
    "robench_affine_f64": (_p, _p, _p, _p, _c_int64, _c_int64, _c_int64),
    "robench_chamfer_distance": (_p, _p, _c_int64, _c_int64, _c_int64, _c_int64),
    "robench_spatter_water": (_p, _p, _p, _p, _p, _p, _c_int64, _c_int64, _c_int64, _c_int64),
    "robench_poisson": (_p, _p, _p, _p, _c_int64, _p, _c_int64, _c_int64, _c_int),
    "robench_shot_noise": (_p, _p, _c_int64, _p, _p, _p, _p, _c_int64, _p, _c_int64, _c_int64, _c_int64, _c_int),
}
_RESULTS = {"robench_shot_noise": _c_int64}


def _cpu_features() -> str:
    """What ``-march=native`` compiles for: the processor's feature flags (or its name)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith(("flags", "Features")):
                return line
    except OSError:
        pass
    return platform.processor() or platform.machine()


class NativeLibrary:
    """The compiled kernels of one C source, built and loaded on first use.

    Args:
        source: the C file.
        cache_dir: where the shared library is kept (default: ``kernels`` in robench's cache).
        compiler: the C compiler command (default: ``$CC`` or ``cc``).
    """

    def __init__(self, source: Path = SOURCE, cache_dir: Path | None = None, compiler: str | None = None) -> None:
        self.source = source
        self.cache_dir = cache_dir
        self.compiler = compiler
        self.failed = False
        self._library: ctypes.CDLL | None = None
        self._lock = threading.Lock()

    def load(self) -> ctypes.CDLL | None:
        """The loaded library, compiling it if this machine has none cached; None (after one
        warning) if that fails."""
        if self._library is not None or self.failed:
            return self._library
        with self._lock:
            if self._library is None and not self.failed:
                try:
                    self._library = self._open(self._build())
                except (OSError, subprocess.SubprocessError, AttributeError) as error:
                    self.failed = True
                    logger.warning("CPU kernels unavailable (%s); using the torch paths", error)
        return self._library

    def _build(self) -> Path:
        compiler = shlex.split(self.compiler or os.environ.get("CC") or "cc")
        text = self.source.read_bytes()
        version = subprocess.run([*compiler, "--version"], capture_output=True, timeout=60, check=True).stdout
        key = hashlib.sha256(b"\0".join([text, version, " ".join(FLAGS + LIBRARIES).encode(), _cpu_features().encode()]))
        from robench.pretrain import default_cache_dir

        cache = self.cache_dir or default_cache_dir() / "kernels"
        target = cache / f"{self.source.stem}-{key.hexdigest()[:16]}.so"
        if target.exists():
            return target
        cache.mkdir(parents=True, exist_ok=True)
        handle, partial = tempfile.mkstemp(dir=cache, prefix=f".{target.name}.", suffix=".so")
        os.close(handle)
        try:
            done = subprocess.run([*compiler, *FLAGS, str(self.source), "-o", partial, *LIBRARIES],
                                  capture_output=True, text=True, timeout=120)
            if done.returncode != 0:
                raise OSError(f"{' '.join(compiler)} failed on {self.source.name}: {done.stderr.strip()[-500:]}")
            os.replace(partial, target)  # atomic: concurrent workers may build the same file
        finally:
            if os.path.exists(partial):
                os.unlink(partial)
        logger.info("compiled CPU kernels into %s", target)
        return target

    @staticmethod
    def _open(path: Path) -> ctypes.CDLL:
        library = ctypes.CDLL(str(path))
        for name, arguments in _SIGNATURES.items():
            function = getattr(library, name)
            function.argtypes = arguments
            function.restype = _RESULTS.get(name)
        return library


LIBRARY = NativeLibrary()
_POOL: ThreadPoolExecutor | None = None
_POOL_LOCK = threading.Lock()


def _forget_pool() -> None:
    global _POOL
    _POOL = None  # a forked child has the pool object but none of its threads


os.register_at_fork(after_in_child=_forget_pool)


def available(device: torch.device) -> bool:
    """Whether work on ``device`` should take the C kernels (compiling them if need be)."""
    return (device.type == "cpu" and os.environ.get("ROBENCH_FUSED", "1") != "0"
            and LIBRARY.load() is not None)


def parallel(work: Callable[[int, int], object], total: int, cost: int) -> None:
    """``work(begin, end)`` over ``[0, total)`` on ``torch.get_num_threads()`` threads, or on this
    thread when ``cost`` (elements touched) is small. Large calls go in up to
    ``_CHUNKS_PER_THREAD`` chunks a thread, each thread taking the next chunk left as it finishes
    one: a thread slowed by the machine (a vCPU that another guest holds) then does less of the
    batch instead of holding the call back until its fixed half is done."""
    global _POOL
    threads = min(torch.get_num_threads(), total)
    if threads <= 1 or cost < _PARALLEL_MIN:
        work(0, total)
        return
    with _POOL_LOCK:
        if _POOL is None:
            _POOL = ThreadPoolExecutor(max_workers=os.cpu_count() or 1, thread_name_prefix="robench-cpu")
        pool = _POOL
    chunks = min(total, threads * _CHUNKS_PER_THREAD)
    while chunks > threads and (total // chunks) * cost < _CHUNK_MIN_COST * total:  # its smallest chunk
        chunks -= 1
    bounds = [total * i // chunks for i in range(chunks + 1)]
    claimed = iter(range(chunks))
    claim = threading.Lock()
    failed = threading.Event()  # a chunk raised: the threads claim no more

    def drain() -> None:
        while not failed.is_set():
            with claim:
                index = next(claimed, None)
            if index is None:
                return
            try:
                work(bounds[index], bounds[index + 1])
            except BaseException:
                failed.set()
                raise

    futures = [pool.submit(drain) for _ in range(threads - 1)]
    try:
        drain()  # the calling thread takes chunks too
    finally:
        for future in futures:  # none left writing once this returns, even after an error here
            future.exception()
    for future in futures:
        future.result()


def takes(images: torch.Tensor) -> bool:
    """Whether a whole-distortion kernel serves these images (a non-empty float32 batch on the CPU,
    kernels on)."""
    return images.dtype == torch.float32 and images.numel() > 0 and available(images.device)
