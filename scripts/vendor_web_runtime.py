"""Copy the pinned onnxruntime-web files that the in-browser page needs into the package.

    python scripts/vendor_web_runtime.py      # needs node/npm and the npm registry, once per version bump

The version is pinned in package.json / package-lock.json (repository root). ``npm ci`` installs
exactly that version into a temporary folder (checking the lockfile's integrity hash), and two of
its ~90 MB of dist files are copied to ``emolens/apps/web/static/vendor/onnxruntime-web/``:
``ort.wasm.bundle.min.mjs`` (the WebAssembly-only API with its Emscripten glue, 73 kB) and
``ort-wasm-simd-threaded.wasm`` (14 MB; SIMD, and threads when the page is cross-origin isolated).
The WebGPU/WebGL/JSPI/asyncify variants are left out. ``MANIFEST.json`` records the version and
the files' SHA-256, which the tests check. Installing emolens never needs node or the network.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DEST = REPO / "emolens" / "apps" / "web" / "static" / "vendor" / "onnxruntime-web"
FILES = ("ort.wasm.bundle.min.mjs", "ort-wasm-simd-threaded.wasm")


def main() -> int:
    npm = shutil.which("npm")
    if npm is None:
        print("npm is not installed: install node/npm (apt-get install npm) to refresh the vendored runtime", file=sys.stderr)
        return 2
    version = json.loads((REPO / "package.json").read_text())["dependencies"]["onnxruntime-web"]
    with tempfile.TemporaryDirectory(prefix="emolens-npm-") as tmp:
        for name in ("package.json", "package-lock.json"):
            shutil.copy(REPO / name, tmp)
        subprocess.run([npm, "ci", "--ignore-scripts", "--no-audit", "--no-fund"], cwd=tmp, check=True)
        package = Path(tmp) / "node_modules" / "onnxruntime-web"
        installed = json.loads((package / "package.json").read_text())["version"]
        if installed != version:
            raise SystemExit(f"npm installed onnxruntime-web {installed}, package.json pins {version}")
        DEST.mkdir(parents=True, exist_ok=True)
        for name in FILES:
            shutil.copy(package / "dist" / name, DEST / name)
    manifest = {"package": "onnxruntime-web", "version": version, "license": "MIT",
                "files": {name: hashlib.sha256((DEST / name).read_bytes()).hexdigest() for name in FILES}}
    (DEST / "MANIFEST.json").write_text(json.dumps(manifest, indent=2) + "\n")
    print(f"onnxruntime-web {version}: {', '.join(FILES)} -> {DEST.relative_to(REPO)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
