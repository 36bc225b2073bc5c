"""static/vendor/: the committed browser libraries are the pinned, published files."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import markdown_it
import pytest

from chatsite import vendor


def test_the_committed_files_match_the_manifest_and_the_pins() -> None:
    assert vendor.problems() == []
    manifest = json.loads(vendor.MANIFEST.read_text())
    for package in vendor.PACKAGES:
        entry = manifest["packages"][package.name]
        assert entry["version"] == package.version
        assert re.fullmatch(r"sha512-[A-Za-z0-9+/]{86}==", entry["integrity"])


def test_the_page_parses_with_the_markdown_it_the_server_runs_a_port_of() -> None:
    # markdown-it-py says which markdown-it it ports; the page must run that one.
    port = (Path(markdown_it.__file__).parent / "port.yaml").read_text()
    ported = re.search(r"package: markdown-it/markdown-it\s+version: (\S+)", port)
    assert ported is not None
    pinned = {p.name: p.version for p in vendor.PACKAGES}
    assert pinned["markdown-it"] == ported.group(1)


@pytest.fixture
def copy(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A copy of static/vendor/ that the checks look at instead."""
    folder = tmp_path / "vendor"
    shutil.copytree(vendor.VENDOR, folder)
    monkeypatch.setattr(vendor, "VENDOR", folder)
    monkeypatch.setattr(vendor, "MANIFEST", folder / "manifest.json")
    return folder


def test_an_edited_file_is_found(copy: Path) -> None:
    target = copy / "dompurify" / "purify.es.mjs"
    target.write_text(target.read_text().replace("ALLOWED_TAGS", "ALLOWED_TAGZ", 1))
    assert vendor.problems() == [
        "static/vendor/dompurify/purify.es.mjs is not the published file (SHA-256 differs)"
    ]


def test_a_missing_or_unlisted_file_is_found(copy: Path) -> None:
    (copy / "markdown-it" / "markdown-it.min.js").unlink()
    (copy / "extra.js").write_text("alert(1)")
    assert vendor.problems() == [
        "static/vendor/markdown-it/markdown-it.min.js is missing",
        "static/vendor/extra.js is not in the manifest",
    ]


def test_a_pin_the_manifest_does_not_have_is_found(
    copy: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    newer = [
        vendor.Package(p.name, "99.0.0", p.files) if p.name == "dompurify" else p
        for p in vendor.PACKAGES
    ]
    monkeypatch.setattr(vendor, "PACKAGES", tuple(newer))
    (problem,) = vendor.problems()
    assert "run `make vendor`" in problem and "99.0.0" in problem
