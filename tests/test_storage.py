"""Static files as production serves them (`collectstatic` with chatsite.storage)."""

from __future__ import annotations

import re
from pathlib import Path

from django.core.management import call_command
from django.test import override_settings


def test_module_imports_point_at_the_hashed_modules(tmp_path: Path) -> None:
    storages = {
        "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
        "staticfiles": {"BACKEND": "chatsite.storage.StaticFilesStorage"},
    }
    with override_settings(STORAGES=storages, STATIC_ROOT=tmp_path):
        call_command("collectstatic", interactive=False, verbosity=0)
    (entry,) = (tmp_path / "js").glob("chat.*.js")
    modules = [entry, *(tmp_path / "js" / "chat").glob("*.*.js")]
    imported = [
        (module.parent / name).resolve()
        for module in modules
        for name in re.findall(r'(?:from|import) ?"(\.[^"]+)"', module.read_text())
    ]
    assert len(imported) >= 6
    for path in imported:
        assert re.search(r"\.[0-9a-f]{12}\.m?js$", path.name), path
        assert path.exists(), path
