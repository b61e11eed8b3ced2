"""pytest setup for the Python package: import it from this checkout's
python/ and load the libtessera this checkout built (TESSERA_LIBRARY wins)."""

import os
import pathlib
import sys

ROOT = pathlib.Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "python"))

if "TESSERA_LIBRARY" not in os.environ:
    # This checkout's build, else the binaries staged for the GPU machine.
    for candidate in (ROOT / "build" / "libtessera.so",
                      ROOT / ".gpu-build" / "lib" / "libtessera.so.0",
                      ROOT / "build-sm90a" / "libtessera.so"):
        if candidate.exists():
            os.environ["TESSERA_LIBRARY"] = str(candidate)
            break
