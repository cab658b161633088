"""Size limits shared by the Python API, the CLI and the web server, read from the environment once."""

from __future__ import annotations

import os

#: Largest image (or video frame) accepted, in pixels: 50 megapixels; ``EMOLENS_MAX_PIXELS`` overrides it.
MAX_PIXELS = int(os.environ.get("EMOLENS_MAX_PIXELS", 50_000_000))
#: The web server's default is lower (it decodes untrusted uploads); ``EMOLENS_MAX_PIXELS`` caps it too.
WEB_MAX_PIXELS = min(24_000_000, MAX_PIXELS)
