"""The seed a request runs with when it gives none: drawn per request, reported back in the
response's ``seed`` so the request can be repeated. Plain Python: the model repository's
forwarding model imports it without the runtime."""

from __future__ import annotations

import secrets

DRAWN_SEEDS = 2**31  # drawn seeds are below this: short enough to type back in


def draw_seed() -> int:
    return secrets.randbelow(DRAWN_SEEDS)
