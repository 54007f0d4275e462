"""deploy/terraform/aws parsed by python-hcl2, with its quoting undone: plain keys and values."""
from __future__ import annotations

from pathlib import Path

import hcl2

from tests.support.procs import ROOT

TERRAFORM = ROOT / "deploy" / "terraform" / "aws"


def _plain(value):
    if isinstance(value, dict):
        return {_plain(k): _plain(v) for k, v in value.items()
                if k not in ("__comments__", "__is_block__")}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    if isinstance(value, str) and len(value) >= 2 and value[0] == value[-1] == '"':
        return value[1:-1]
    return value


def load(folder: Path = TERRAFORM) -> dict:
    """{'resource': {type: {name: body}}, 'variable': {name: body}, 'output': …, 'data': …}."""
    merged: dict = {"resource": {}, "data": {}, "variable": {}, "output": {}, "locals": {}}
    for path in sorted(folder.glob("*.tf")):
        with path.open() as f:
            doc = _plain(hcl2.load(f))
        for block in doc.get("resource", []) + []:
            for rtype, named in block.items():
                merged["resource"].setdefault(rtype, {}).update(named)
        for block in doc.get("data", []):
            for dtype, named in block.items():
                merged["data"].setdefault(dtype, {}).update(named)
        for kind in ("variable", "output"):
            for block in doc.get(kind, []):
                merged[kind].update(block)
        for block in doc.get("locals", []):
            merged["locals"].update(block)
    return merged


def one(body_list):
    """A nested block (hcl2 gives a list of one dict)."""
    return body_list[0] if isinstance(body_list, list) else body_list
