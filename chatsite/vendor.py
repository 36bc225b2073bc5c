"""The browser libraries of static/vendor/: pinned npm packages, copied as published.

The page renders a streaming reply with markdown-it and DOMPurify (static/js/chat/
markdown.js). Their files are committed, so running or testing the app needs neither npm
nor the network; this module is how they are refreshed and how they are checked:

    python -m chatsite.vendor          # `make vendor`: fetch the pinned versions again
    python -m chatsite.vendor --check  # the committed files are the ones in the manifest

Refreshing runs `npm pack` for each pinned version (npm checks the tarball against the
registry's `dist.integrity`), checks that integrity again here, and copies the listed files
unchanged into static/vendor/, recording each file's SHA-256 in static/vendor/manifest.json.
tests/test_vendor.py runs the check, so a hand-edited or stale copy fails the suite.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import json
import shutil
import subprocess
import sys
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
VENDOR = ROOT / "static" / "vendor"
MANIFEST = VENDOR / "manifest.json"


@dataclass(frozen=True)
class Package:
    name: str
    version: str
    # file in the package (under package/) -> file under static/vendor/
    files: dict[str, str]


# markdown-it at the version conversations/rendering.py's markdown-it-py is a port of (see
# its port.yaml), so the page's parser is the server's. It publishes no single-file ES
# module: its browser build (UMD) is imported as a module as it is, and leaves `markdownit`
# on globalThis (static/js/chat/markdown.js). DOMPurify publishes an ES module; its source
# map comes along because the hashed static storage follows the file's reference to it.
PACKAGES = (
    Package(
        "markdown-it",
        "14.1.0",
        {
            "dist/markdown-it.min.js": "markdown-it/markdown-it.min.js",
            "LICENSE": "markdown-it/LICENSE",
        },
    ),
    Package(
        "dompurify",
        "3.5.0",
        {
            "dist/purify.es.mjs": "dompurify/purify.es.mjs",
            "dist/purify.es.mjs.map": "dompurify/purify.es.mjs.map",
            "LICENSE": "dompurify/LICENSE",
        },
    ),
)


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def sri(data: bytes) -> str:
    """An npm integrity string (Subresource Integrity, sha512) of `data`."""
    return "sha512-" + base64.b64encode(hashlib.sha512(data).digest()).decode()


def pack(package: Package, into: Path) -> tuple[Path, str]:
    """The package's tarball from the registry (via npm), and its checked integrity."""
    npm = shutil.which("npm")
    if npm is None:
        raise SystemExit("npm is needed to refresh static/vendor/ (apt-get install npm)")
    run = subprocess.run(
        [
            npm,
            "pack",
            "--json",
            "--pack-destination",
            str(into),
            f"{package.name}@{package.version}",
        ],
        check=True,
        capture_output=True,
        text=True,
    )
    (info,) = json.loads(run.stdout)
    tarball = into / info["filename"]
    if info["version"] != package.version:
        raise SystemExit(f"npm gave {package.name} {info['version']}, not {package.version}")
    integrity = sri(tarball.read_bytes())
    if integrity != info["integrity"]:
        raise SystemExit(f"{tarball.name}: integrity {integrity} is not npm's {info['integrity']}")
    return tarball, integrity


def refresh() -> dict[str, object]:
    """Fetch every pinned package, copy its files, and write the manifest."""
    packages: dict[str, object] = {}
    files: dict[str, object] = {}
    if VENDOR.exists():
        shutil.rmtree(VENDOR)
    with tempfile.TemporaryDirectory() as temp:
        for package in PACKAGES:
            tarball, integrity = pack(package, Path(temp))
            packages[package.name] = {"version": package.version, "integrity": integrity}
            with tarfile.open(tarball) as archive:
                for source, target in package.files.items():
                    member = archive.extractfile(f"package/{source}")
                    if member is None:
                        raise SystemExit(f"{package.name}: no file {source}")
                    path = VENDOR / target
                    path.parent.mkdir(parents=True, exist_ok=True)
                    path.write_bytes(member.read())
                    files[target] = {
                        "package": package.name,
                        "source": source,
                        "sha256": sha256(path),
                    }
    manifest = {"packages": packages, "files": files}
    MANIFEST.write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    return manifest


def problems() -> list[str]:
    """What differs between static/vendor/ and its manifest, and the pins above."""
    if not MANIFEST.exists():
        return [f"{MANIFEST.relative_to(ROOT)} is missing: run `make vendor`"]
    manifest = json.loads(MANIFEST.read_text())
    found: list[str] = []
    pinned = {p.name: p.version for p in PACKAGES}
    recorded = {name: entry["version"] for name, entry in manifest["packages"].items()}
    if recorded != pinned:
        found.append(f"manifest versions {recorded} are not the pinned {pinned}: run `make vendor`")
    expected = {target for p in PACKAGES for target in p.files.values()}
    if set(manifest["files"]) != expected:
        found.append("manifest files are not the pinned packages' files: run `make vendor`")
    for target, entry in manifest["files"].items():
        path = VENDOR / target
        if not path.exists():
            found.append(f"static/vendor/{target} is missing")
        elif sha256(path) != entry["sha256"]:
            found.append(f"static/vendor/{target} is not the published file (SHA-256 differs)")
    on_disk = {
        str(p.relative_to(VENDOR)) for p in VENDOR.rglob("*") if p.is_file() and p != MANIFEST
    }
    for extra in sorted(on_disk - set(manifest["files"])):
        found.append(f"static/vendor/{extra} is not in the manifest")
    return found


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="check, do not fetch")
    args = parser.parse_args(argv)
    if not args.check:
        refresh()
    found = problems()
    for problem in found:
        print(problem, file=sys.stderr)
    if not found:
        print(f"static/vendor/ matches {MANIFEST.relative_to(ROOT)}")
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())
