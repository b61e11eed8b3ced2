"""How the package finds what it needs at run time (no GPU): the CUDA
runtime, NVRTC and CUDA headers in torch's NVIDIA pip wheels, the refusal of
a torch built for another CUDA major, and the JIT of the package laid out as
pip installs it, with the build tree's and the toolkit's paths out of reach."""

import os
import pathlib
import shutil
import subprocess
import sys
import textwrap

import pytest
import torch

from tessera import _cuda_paths, _lib

ROOT = pathlib.Path(__file__).resolve().parents[2]


def make_dirs(root, *relative):
    for path in relative:
        (root / path).mkdir(parents=True)


# --- discovery in a pip site directory ------------------------------------


def test_cuda13_wheels_are_found_under_nvidia_cu13(tmp_path):
    make_dirs(tmp_path, "nvidia/cu13/include", "nvidia/cu13/lib", "nvidia/cudnn/include")
    (tmp_path / "nvidia/cu13/lib/libnvrtc.so.13").write_bytes(b"")
    assert _cuda_paths.pip_include_dirs(13, [str(tmp_path)]) == [
        str(tmp_path / "nvidia/cu13/include")]
    assert _cuda_paths.pip_library("libnvrtc.so.13", [str(tmp_path)]) == (
        tmp_path / "nvidia/cu13/lib/libnvrtc.so.13")
    assert _cuda_paths.pip_library("libcudart.so.13", [str(tmp_path)]) is None


def test_cuda12_wheels_are_found_per_component(tmp_path):
    make_dirs(tmp_path, "nvidia/cuda_runtime/include", "nvidia/cuda_cccl/include",
              "nvidia/cu13/include")
    assert _cuda_paths.pip_include_dirs(12, [str(tmp_path)]) == [
        str(tmp_path / "nvidia/cuda_runtime/include"), str(tmp_path / "nvidia/cuda_cccl/include")]


def test_wheel_dirs_are_appended_to_the_jit_cuda_path_once(tmp_path, monkeypatch):
    make_dirs(tmp_path, "nvidia/cu13/include")
    monkeypatch.setenv("TESSERA_JIT_CUDA_INCLUDE_PATH", "/opt/mine")
    _cuda_paths.point_jit_at_pip_headers(13, [str(tmp_path)])
    _cuda_paths.point_jit_at_pip_headers(13, [str(tmp_path)])
    assert os.environ["TESSERA_JIT_CUDA_INCLUDE_PATH"] == (
        f"/opt/mine:{tmp_path / 'nvidia/cu13/include'}")


# --- the messages ---------------------------------------------------------


def test_a_missing_cuda_runtime_is_named_with_its_major():
    error = "libcudart.so.13: cannot open shared object file: No such file or directory"
    soname = _cuda_paths.missing_cuda_library(error)
    assert soname == "libcudart.so.13"
    message = _cuda_paths.missing_library_message(soname, error)
    assert "needs libcudart.so.13" in message and "CUDA 13" in message
    assert "\n" not in message
    assert _cuda_paths.missing_cuda_library("libfoo.so.1: cannot open shared object file") is None
    # bmm_fp8's cuBLASLt comes from the same wheels.
    assert _cuda_paths.missing_cuda_library(
        "libcublasLt.so.13: cannot open shared object file: No such file") == "libcublasLt.so.13"


def test_a_torch_for_another_cuda_major_is_refused_naming_both():
    with pytest.raises(ImportError, match=r"built for CUDA 13 but torch 2\.8\.0 is built for "
                                          r"CUDA 12\.8"):
        _cuda_paths.check_torch_cuda(13, "2.8.0", "12.8")


def test_a_torch_for_the_same_major_or_cpu_only_passes():
    _cuda_paths.check_torch_cuda(13, "2.15.0", "13.2")
    _cuda_paths.check_torch_cuda(13, "2.15.0+cpu", None)


def test_the_loaded_library_and_this_torch_agree():
    major = _cuda_paths.runtime_major(_lib.library())
    assert major >= 12
    if torch.version.cuda:
        assert int(torch.version.cuda.split(".")[0]) == major


# --- the package as pip lays it out ---------------------------------------

JIT_SCRIPT = textwrap.dedent("""
    import sys
    import torch
    import tessera, tessera.jit as jit
    # Only the fake site directory: what a machine whose pip wheels are
    # exactly those would show (torch is imported already).
    sys.path[:] = [sys.argv[1]]
    source = '''
    struct Halved : VariantBase {
      float scale;
      __device__ __forceinline__ Halved(const VariantParams& p, int, int)
          : scale(0.5f * p.sm_scale * p.k_scale * kLog2e) {}
      __device__ __forceinline__ float query_scale() const { return scale; }
    };'''
    try:
        info = jit.compile(jit.VariantSpec("Halved", source), use_disk_cache=False)
        print("compiled", info.cubin_bytes, tessera._lib.library()._name)
    except tessera.TesseraError as error:
        print("failed", error)
""")


def cuda_include_for(major):
    """A directory of CUDA `major` headers on this machine (pip wheel or
    toolkit) that holds libcu++ too (in cccl/ or directly): a pip runtime
    wheel without nvidia-cuda-cccl beside it (the GPU machine's torch) cannot
    stand in for the wheels the package needs."""
    found = _cuda_paths.pip_include_dirs(major)
    for root in (os.environ.get("CUDA_HOME"), os.environ.get("CUDA_PATH"), "/usr/local/cuda"):
        if root:
            found.append(os.path.join(root, "include"))
    for include in found:
        has_libcudacxx = any(os.path.isdir(os.path.join(include, *sub, "cuda", "std"))
                             for sub in ((), ("cccl",)))
        if os.path.exists(os.path.join(include, "cuda_runtime_api.h")) and has_libcudacxx:
            return pathlib.Path(include)
    return None


@pytest.fixture(scope="module")
def wheel_site(tmp_path_factory):
    """site-packages/tessera as the wheel installs it: the package, lib/ with
    the one library file, include/ with the device headers."""
    library = pathlib.Path(_lib.library()._name).resolve()
    site = tmp_path_factory.mktemp("site")
    shutil.copytree(ROOT / "python" / "tessera", site / "tessera",
                    ignore=shutil.ignore_patterns("__pycache__", "lib", "include"))
    (site / "tessera" / "lib").mkdir()
    shutil.copy2(library, site / "tessera" / "lib" / "libtessera.so")
    shutil.copytree(ROOT / "include", site / "tessera" / "include")
    return site


def run_jit(site, tmp_path):
    env = {k: v for k, v in os.environ.items()
           if k not in ("TESSERA_LIBRARY", "CUDA_HOME", "CUDA_PATH", "TESSERA_JIT_INCLUDE_PATH",
                        "TESSERA_JIT_CUDA_INCLUDE_PATH", "PYTHONPATH")}
    env.update(PYTHONPATH=str(site), TESSERA_JIT_IGNORE_BUILTIN_PATHS="1",
               TESSERA_CACHE_DIR=str(tmp_path / "cache"))
    done = subprocess.run([sys.executable, "-c", JIT_SCRIPT, str(site)], env=env,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip().splitlines()[-1]


def test_the_wheel_jit_reads_its_own_headers_and_the_pip_cuda_headers(wheel_site, tmp_path):
    major = _cuda_paths.runtime_major(_lib.library())
    cuda_include = cuda_include_for(major)
    if cuda_include is None:
        pytest.skip(f"no CUDA {major} headers on this machine to stand in for the pip wheels")
    # A site directory of its own whose nvidia/ wheel holds links to them.
    site = tmp_path / "site"
    shutil.copytree(wheel_site, site, symlinks=True)
    fake = site / "nvidia" / _cuda_paths._pip_folders(major)[0] / "include"
    fake.mkdir(parents=True)
    for entry in cuda_include.iterdir():
        (fake / entry.name).symlink_to(entry)
    result = run_jit(site, tmp_path)
    assert result.startswith("compiled"), result
    assert str(site / "tessera" / "lib" / "libtessera.so") in result


def test_the_wheel_jit_without_cuda_headers_names_the_header_and_the_search(wheel_site,
                                                                             tmp_path):
    result = run_jit(wheel_site, tmp_path)
    assert result.startswith("failed"), result
    assert "was not found; searched, in order: " + str(wheel_site / "tessera" / "include") + "." \
        in result
    assert "header <cuda" in result
