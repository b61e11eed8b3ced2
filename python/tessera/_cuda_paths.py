"""The CUDA pieces libtessera needs at run time, where pip puts them.

libtessera links the CUDA runtime, NVRTC and cuBLASLt of the toolkit it was
built with (libcudart.so.<major>, libnvrtc.so.<major>, libcublasLt.so.<major>),
and its JIT compiles against
the CUDA headers (cuda_fp16.h ..., libcu++ <cuda/std/...>). A machine with
only a pip-installed torch has all of these in the NVIDIA wheels torch
brings, not in a toolkit: CUDA 13 wheels install under
site-packages/nvidia/cu13/{lib,include} (libcu++ in include/cccl, from
nvidia-cuda-cccl), CUDA 12 wheels under nvidia/cuda_runtime, nvidia/cuda_nvrtc,
nvidia/cuda_cccl and nvidia/cublas. This module finds them and says plainly what is
missing when the library's CUDA and torch's do not go together.
"""

from __future__ import annotations

import ctypes
import os
import pathlib
import re
import sys
from typing import Iterable, List, Optional

# Per CUDA major: the folders under nvidia/ of its pip wheels.
_PIP_FOLDERS = {12: ("cuda_runtime", "cuda_nvrtc", "cuda_cccl", "cublas")}


def _pip_folders(cuda_major: int):
    return _PIP_FOLDERS.get(cuda_major, (f"cu{cuda_major}",))


def _nvidia_dirs(roots: Optional[Iterable[str]] = None) -> List[pathlib.Path]:
    """Every nvidia/ directory on the import path, in import order (the
    wheels install a namespace package that may span several site dirs)."""
    found = []
    for root in (sys.path if roots is None else roots):
        candidate = pathlib.Path(root or ".") / "nvidia"
        if candidate.is_dir() and candidate not in found:
            found.append(candidate)
    return found


def pip_include_dirs(cuda_major: int, roots: Optional[Iterable[str]] = None) -> List[str]:
    """The pip wheels' CUDA include directories for this CUDA major. libtessera
    adds each one's cccl/ subdirectory itself."""
    dirs = []
    for nvidia in _nvidia_dirs(roots):
        for folder in _pip_folders(cuda_major):
            include = nvidia / folder / "include"
            if include.is_dir():
                dirs.append(str(include))
    return dirs


def pip_library(soname: str, roots: Optional[Iterable[str]] = None) -> Optional[pathlib.Path]:
    """Where a pip wheel holds `soname` (e.g. libnvrtc.so.13), or None."""
    match = re.match(r"lib\w+\.so\.(\d+)", soname)
    if not match:
        return None
    for nvidia in _nvidia_dirs(roots):
        for folder in _pip_folders(int(match.group(1))):
            path = nvidia / folder / "lib" / soname
            if path.exists():
                return path
    return None


def missing_cuda_library(loader_error: str) -> Optional[str]:
    """The CUDA library the dynamic loader could not find, from its message
    ("libnvrtc.so.13: cannot open shared object file ..."), or None."""
    match = re.search(
        r"(lib(?:cudart|nvrtc|cublasLt)\.so\.\d+): cannot open shared object file", loader_error)
    return match.group(1) if match else None


def missing_library_message(soname: str, loader_error: str) -> str:
    major = soname.rsplit(".", 1)[1]
    return (f"tessera: libtessera needs {soname} (the CUDA {major} runtime it was built with), "
            f"which could not be loaded ({loader_error.strip()}); install a CUDA {major} build "
            f"of torch (its nvidia wheels carry it) or the CUDA {major} toolkit, or add the "
            f"directory holding {soname} to LD_LIBRARY_PATH")


def check_torch_cuda(library_cuda_major: int, torch_version: str,
                     torch_cuda: Optional[str]) -> None:
    """Raises ImportError when torch was built for another CUDA major than
    libtessera: tensors and kernels would then live under two CUDA runtimes.
    A CPU-only torch (torch_cuda None) passes: it never hands over GPU
    tensors."""
    if not torch_cuda:
        return
    torch_major = int(torch_cuda.split(".")[0])
    if torch_major != library_cuda_major:
        raise ImportError(
            f"tessera: this libtessera is built for CUDA {library_cuda_major} but torch "
            f"{torch_version} is built for CUDA {torch_cuda}; install a torch build for CUDA "
            f"{library_cuda_major} (torch.version.cuda {library_cuda_major}.x) or build "
            f"tessera with a CUDA {torch_major} toolkit")


def runtime_major(library: ctypes.CDLL) -> int:
    """The major version of the CUDA runtime libtessera is bound to (dlsym on
    the library's handle searches its dependencies, so this is its
    libcudart, whichever copy the loader picked). Needs no GPU."""
    get_version = getattr(library, "cudaRuntimeGetVersion", None)
    version = ctypes.c_int(0)
    if get_version is None or get_version(ctypes.byref(version)) != 0:
        return 0  # a static runtime: nothing to compare
    return version.value // 1000


def load_with_pip_cuda(path: str, roots: Optional[Iterable[str]] = None) -> ctypes.CDLL:
    """ctypes.CDLL(path), first loading from the pip wheels any CUDA library
    the loader does not find by itself (as torch does for its own)."""
    preloaded = set()
    while True:
        try:
            return ctypes.CDLL(path)
        except OSError as error:
            soname = missing_cuda_library(str(error))
            if soname is None:
                raise
            wheel_copy = pip_library(soname, roots)
            if wheel_copy is None or soname in preloaded:
                raise ImportError(missing_library_message(soname, str(error))) from error
            try:
                ctypes.CDLL(str(wheel_copy), mode=ctypes.RTLD_GLOBAL)
            except OSError as wheel_error:
                raise ImportError(missing_library_message(soname, str(wheel_error))) from error
            preloaded.add(soname)


def point_jit_at_pip_headers(cuda_major: int, roots: Optional[Iterable[str]] = None) -> None:
    """Appends the pip wheels' CUDA include directories to
    TESSERA_JIT_CUDA_INCLUDE_PATH, which libtessera's JIT searches after
    $CUDA_HOME, $CUDA_PATH and its build's toolkit (docs/jit.md). Read at the
    first JIT compile, so this runs when the library is loaded."""
    dirs = pip_include_dirs(cuda_major, roots)
    if not dirs:
        return
    current = [d for d in os.environ.get("TESSERA_JIT_CUDA_INCLUDE_PATH", "").split(":") if d]
    os.environ["TESSERA_JIT_CUDA_INCLUDE_PATH"] = ":".join(
        current + [d for d in dirs if d not in current])
