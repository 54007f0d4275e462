"""Deterministic firmware images for tests (different bytes per seed, any length)."""
from __future__ import annotations

import hashlib


def image(n: int = 50_000, seed: bytes | str = b"fw") -> bytes:
    """``n`` bytes derived from ``seed`` by chained sha256 (no random state, no big literals)."""
    out, block = bytearray(), seed.encode() if isinstance(seed, str) else seed
    while len(out) < n:
        block = hashlib.sha256(block).digest()
        out += block
    return bytes(out[:n])
