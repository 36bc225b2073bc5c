"""Static files in production: WhiteNoise's compressed copies with content-hashed names."""

from __future__ import annotations

from whitenoise.storage import CompressedManifestStaticFilesStorage


class StaticFilesStorage(CompressedManifestStaticFilesStorage):
    # The chat's script is several ES modules (static/js/chat/). Their imports are rewritten
    # to the hashed names too, so a page never runs a new entry module with an older module
    # still cached behind it (unhashed names are cached for a while, not forever).
    support_js_module_import_aggregation = True
