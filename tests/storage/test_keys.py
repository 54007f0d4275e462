"""validate_key / validate_prefix rules shared by every adapter."""

from __future__ import annotations

import pytest

from storage import InvalidKey, validate_key
from storage.base import validate_prefix


@pytest.mark.parametrize(
    "key",
    [
        "a",
        "firmware/v1.2.3/image.bin",
        "a..b",
        "..a",
        ".hidden",
        "a/b c/d",
        "ünïcödé/ファイル.bin",
        "a~b",
        "ab:c",
        "a/C:/b",
        "é" * 512,  # exactly 1024 UTF-8 bytes
    ],
)
def test_valid_keys_returned_unchanged(key):
    assert validate_key(key) == key


@pytest.mark.parametrize(
    "key",
    [
        "",
        "/abs",
        "../x",
        "a/..",
        "a/../../b",
        "a/./b",
        ".",
        "a//b",
        "a/",
        "a\\b",
        "a\x00b",
        "a\tb",
        "a\rb",
        "a\x1fb",
        "a\x7fb",
        "~",
        "~user/x",
        "C:/x",
        "c:x",
        "x:y",
        "x" * 1025,
        "é" * 512 + "x",  # 1025 UTF-8 bytes although only 513 characters
        "\udc80",  # lone surrogate: not encodable
        ".tmp-1234",
        "dir/.tmp-1234",
        None,
        b"bytes",
        42,
    ],
)
def test_invalid_keys(key):
    with pytest.raises(InvalidKey):
        validate_key(key)


@pytest.mark.parametrize("prefix", ["", "a", "a/", "a/b/", "fw/v1.", "a/.", "a/..x", "dir/.tm"])
def test_valid_prefixes(prefix):
    assert validate_prefix(prefix) == prefix


@pytest.mark.parametrize("prefix", ["/", "/a", "../", "a/../", "a//", "~", "C:", "a\\", "a\x00", None])
def test_invalid_prefixes(prefix):
    with pytest.raises(InvalidKey):
        validate_prefix(prefix)
