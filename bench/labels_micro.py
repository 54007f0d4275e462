#!/usr/bin/env python3
"""ZPL render throughput (labels/s on one core) and preview latency, for the built-in templates.

    python bench/labels_micro.py [--n 20000] [--previews 50]

Targets (issue 3): render >= 5,000 labels/s on one core; preview < 30 ms.
Rendering is what every label job does in the worker (validate data, hex-escape every field,
resolve dimensions for the printer's dpi); preview is zplkit rendering the exact ZPL to PNG,
with the label font (TrueType, Hangul) that every label names, parsed by zplkit on each render.
"""
from __future__ import annotations

import argparse
import json
import statistics
import time
from types import SimpleNamespace

from printers import load_font, preview_png
from printers.fonts import find_font
from web.services.labels import templates as tpl

DATA = {"product_code": "NH-100", "product_name": "NeuroHub sensor module",
        "lot_no": "LOT-20261126-0007", "date": "2026-11-26"}
EXTRA = {"unit": {"serial": "SN-000123"}, "lot": {"quantity": 120, "routing": "SMT > FCT"},
         "box": {"quantity": 120}}


def template(name: str):
    spec = tpl.BUILTIN[name]
    return SimpleNamespace(name=name, version=1, body=spec["body"], variables=spec["variables"],
                           width_mm=spec["width_mm"], height_mm=spec["height_mm"])


FONT = load_font(find_font(""))  # the bundled label font, as LABEL_FONT unset gives
FONTS = {FONT.path: FONT.data}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=20000)
    ap.add_argument("--previews", type=int, default=50)
    args = ap.parse_args()
    out = {}
    for name in tpl.BUILTIN:
        t, data = template(name), dict(DATA, **EXTRA[name])
        tpl.render(t, data, font=FONT)  # warm up regex caches
        start = time.perf_counter()
        for i in range(args.n):
            tpl.render(t, dict(data, lot_no=f"LOT-20261126-{i % 10000:04d}"), font=FONT)
        rate = args.n / (time.perf_counter() - start)
        zpl = tpl.render(t, data, font=FONT)
        preview_png(zpl, fonts=FONTS)  # warm up zplkit
        times = []
        for _ in range(args.previews):
            t0 = time.perf_counter()
            preview_png(zpl, fonts=FONTS)
            times.append((time.perf_counter() - t0) * 1000)
        times.sort()
        out[name] = {"render_per_s": round(rate), "preview_p50_ms": round(statistics.median(times), 2),
                     "preview_p99_ms": round(times[min(len(times) - 1, int(len(times) * 0.99))], 2)}
    print(f"{'template':9} {'render/s':>10} {'preview p50':>12} {'preview p99':>12}")
    for name, r in out.items():
        print(f"{name:9} {r['render_per_s']:>10} {r['preview_p50_ms']:>10} ms "
              f"{r['preview_p99_ms']:>9} ms")
    print(json.dumps(out))


if __name__ == "__main__":
    main()
