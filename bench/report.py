"""The results table and the notes printed under it."""
from __future__ import annotations

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from harness import TARGETS  # noqa: E402


# --------------------------------------------------------------------------- report

def fmt(v, spec=".0f", none="-"):
    return none if v is None else format(v, spec)


def verdict(ok: bool | None) -> str:
    return "-" if ok is None else ("PASS" if ok else "FAIL")


def table(res: dict) -> str:
    rows: list[tuple[str, ...]] = [("benchmark", "ours", "yardstick", "ratio / value", "target",
                                    "result")]
    ing = res.get("ingest")
    if ing:
        for i, (o, n) in enumerate(zip(ing["rounds"]["ours"], ing["rounds"]["naive"])):
            rows.append((f"ingest req/s, round {i + 1}", fmt(o["rps"], ".1f"), fmt(n["rps"], ".1f"),
                         fmt(ing["pair_ratios"][i], ".2f") + "x",
                         f"load {o.get('loadavg_before', 0):.1f}/{n.get('loadavg_before', 0):.1f}",
                         "" if o["valid"] and n["valid"] else "INVALID"))
        rows.append(("ingest req/s, median", fmt(ing["median_rps"]["ours"], ".1f"),
                     fmt(ing["median_rps"]["naive"], ".1f"), fmt(ing["ratio"], ".2f") + "x",
                     f">= {TARGETS['ingest_ratio_min']}x",
                     verdict(ing["pass"]) if ing["valid"] else "INVALID"))
        mo = ing["probe"]["ours"]["status_mix"]
        mn = ing["probe"]["naive"]["status_mix"]
        non2 = (sum(r["non_2xx_3xx"] or 0 for r in ing["rounds"]["ours"]),
                sum(r["non_2xx_3xx"] or 0 for r in ing["rounds"]["naive"]))
        rows.append(("ingest status mix (probe)", json.dumps(mo), json.dumps(mn), "", "only 202",
                     verdict(mo is not None and set(mo) == {"202"})))
        rows.append(("ingest non-2xx, all rounds", str(non2[0]), str(non2[1]), "", "0",
                     verdict(non2[0] == 0)))
    pipe = res.get("pipeline")
    if pipe:
        rows.append((f"pipeline {pipe['n']} HTTP->accepted /s", fmt(pipe["completions_per_s"], ".1f"),
                     fmt(pipe["noop_tasks_per_s"], ".0f") + " noop", fmt(pipe["ratio"], ".2f") + "x",
                     f">= {TARGETS['pipeline_ratio_min']}x", verdict(pipe["pass"])))
        rows.append(("  no-op runs (before, after)", "",
                     ", ".join(str(x["tasks_per_s"]) for x in pipe["noop"]), "", "", ""))
        sc = pipe["status_counts"]
        rows.append(("  accepted/rejected/failed/received",
                     "/".join(str(sc.get(k, 0)) for k in ("accepted", "rejected", "failed",
                                                          "received")),
                     "", f"{pipe['end_to_end_seconds']}s", f"{pipe['n']} accepted",
                     verdict(pipe["all_accepted"])))
        rows.append((f"  POST phase req/s ({pipe['conns']} conns)", fmt(pipe["post_rps"], ".1f"), "",
                     f"{pipe['post_seconds']}s", "", ""))
    lat = res.get("latency")
    if lat:
        pm, am = lat["post_ms"], lat["received_to_accepted_ms"]
        rows.append((f"POST ms @{lat['rate']:g}/s p50 / p99", f"{fmt(pm['p50'], '.1f')} / "
                     f"{fmt(pm['p99'], '.1f')}", "", f"max {fmt(pm['max'], '.1f')}",
                     f"p99 < {TARGETS['post_p99_ms_max']:g}", verdict(lat["pass_post"])))
        sm = lat["post_from_schedule_ms"]
        rows.append(("  same, from scheduled send", f"{fmt(sm['p50'], '.1f')} / "
                     f"{fmt(sm['p99'], '.1f')}", "", f"{lat['achieved_rate']}/s achieved", "", ""))
        rows.append(("received->accepted ms p50 / p99", f"{fmt(am['p50'], '.1f')} / "
                     f"{fmt(am['p99'], '.1f')}", "", f"max {fmt(am['max'], '.1f')}",
                     f"p99 < {TARGETS['accept_p99_ms_max']:g}", verdict(lat["pass_accept"])))
    rss = res.get("rss")
    if rss:
        rows.append(("RSS gunicorn web worker MB (max)", fmt(rss["web_max_mb"], ".1f"),
                     fmt(rss.get("naive_max_mb"), ".1f") + " naive", "",
                     f"< {TARGETS['web_rss_mb_max']:g}", verdict(rss["web_pass"])))
        rows.append(("RSS celery pool child MB (max)", fmt(rss["worker_max_mb"], ".1f"), "", "",
                     f"< {TARGETS['worker_rss_mb_max']:g}", verdict(rss["worker_pass"])))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = []
    for j, r in enumerate(rows):
        lines.append("  ".join(c.ljust(widths[i]) for i, c in enumerate(r)).rstrip())
        if j == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


def details(res: dict) -> str:
    """A few lines under the table that help read it (where the CPU went, queue build-up)."""
    out = []
    pipe = res.get("pipeline")
    if pipe and pipe.get("cpu_ms_per_completion"):
        parts = ", ".join(f"{k} {v:.2f}" for k, v in pipe["cpu_ms_per_completion"].items())
        out.append(f"pipeline CPU ms per completion: {parts}")
    lat = res.get("latency")
    if lat and lat.get("received_to_accepted_p50_by_second"):
        out.append("latency received->accepted p50 by second (ms): "
                   + " ".join(f"{v:.0f}" for v in lat["received_to_accepted_p50_by_second"]))
    src = res.get("source")
    if src:
        out.append(f"product source: {src.get('source')} {src.get('commit', '')} "
                   f"({src.get('web_module')})".replace("  ", " "))
    return "\n".join(out)
