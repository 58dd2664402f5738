"""Render the scale scenarios' results into docs/benchmarks.md (tables) and docs/bench/*.png.

    python bench/render.py            # every bench/results/{lanes,latency,soak,recognition}.json present

Each scenario's block in docs/benchmarks.md sits between ``<!-- bench:NAME -->`` and
``<!-- /bench:NAME -->`` and is replaced as a whole: the command, the machine (with its load
average before and after: other work shares the machine), the table and the plot. The prose
around the blocks is written by hand.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

sys.path.insert(0, str(Path(__file__).resolve().parent))
from harness import markdown_table

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"
DOC = ROOT / "docs" / "benchmarks.md"
FIGS = ROOT / "docs" / "bench"


def _machine(r: dict[str, Any]) -> str:
    m = r.get("machine") or {}
    after = (r.get("machine_after") or {}).get("loadavg_1m")
    when = str(m.get("when", "?")).replace("T", " ").removesuffix("+00:00")
    load = f"1-min load average {m.get('loadavg_1m')} at the start" + (f", {after} at the end" if after else "")
    return (
        f"{when} UTC on {m.get('cpu')} ({m.get('cores')} cores), kernel {m.get('kernel')}, "
        f"Python {m.get('python')}, Mosquitto {m.get('mosquitto')}; {load} — other engineers' work shared the machine"
    )


def _head(r: dict[str, Any], fig: str | None) -> list[str]:
    out = [f"`{r['command']}` (result: `bench/results/{Path(r['command'].split()[2]).stem}.json`)", ""]
    out += [f"Measured {_machine(r)}.", ""]
    if fig:
        out += [f"![{fig}](bench/{fig})", ""]
    return out


def lanes(r: dict[str, Any]) -> list[str]:
    rows = [x for x in r["rows"] if "error" not in x]
    fig = "lanes.png"
    if rows:
        n = [x["lanes"] for x in rows]
        f, (a, b, c) = plt.subplots(1, 3, figsize=(12, 3.4))
        a.plot(n, [x["lane_cpu_pct_mean"] for x in rows], "o-", label="per lane daemon (mean)")
        a.plot(n, [x["lanes_cpu_pct_total"] for x in rows], "s-", label="all lane daemons")
        a.plot(n, [x["bench_cpu_pct"] for x in rows], "^--", label="simulators + platform (bench)")
        a.set(xlabel="lanes", ylabel="CPU % of one core", title="CPU")
        a.legend(fontsize=7)
        b.plot(n, [x["lane_rss_mb_mean"] for x in rows], "o-", label="mean")
        b.plot(n, [x["lane_rss_mb_max"] for x in rows], "s--", label="max")
        b.set(xlabel="lanes", ylabel="MB", title="RSS per lane daemon")
        b.set_ylim(bottom=0)
        b.legend(fontsize=7)
        c.plot(n, [x["passages_per_sim_hour_per_lane"] for x in rows], "o-")
        c.set(xlabel="lanes", ylabel="passages", title="passages per simulated hour, per lane")
        c.set_ylim(bottom=0)
        for ax in (a, b, c):
            ax.set_xticks(n)
            ax.grid(alpha=0.3)
        f.tight_layout()
        f.savefig(FIGS / fig, dpi=90)
        plt.close(f)
    cols = {
        "lanes": "lanes",
        "passages_per_wall_hour": "passages / wall hour (host, ×10 pace)",
        "passages_per_sim_hour_per_lane": "passages / sim. hour / lane",
        "per_sim_hour_per_lane_by_kind": "… by lane kind",
        "lane_cpu_pct_mean": "CPU % per lane daemon (mean)",
        "lane_cpu_pct_max": "(max)",
        "lanes_cpu_pct_total": "CPU % all lanes",
        "lane_rss_mb_mean": "RSS MB per lane",
        "lane_pss_mb_mean": "PSS MB",
        "lane_uss_mb_mean": "USS MB",
        "scanner_cpu_pct": "scanner CPU %",
        "mosquitto_cpu_pct": "Mosquitto CPU %",
        "bench_cpu_pct": "simulators + platform CPU %",
        "loadavg_before": "load 1/5/15 min before",
        "loadavg_after": "after",
    }
    cols = {k: v for k, v in cols.items() if any(k in x for x in rows)}
    table = markdown_table([{v: _cell(x.get(k)) for k, v in cols.items()} for x in rows], list(cols.values()))
    errs = [f"- {x['lanes']} lanes: {x['error']}" for x in r["rows"] if "error" in x]
    extra = f"Time factor {r.get('time_factor')}, share of cargo passages scanned {r.get('inspect_ratio', 0.3)}."
    return [*_head(r, fig if rows else None), extra, "", table, "", *errs]


def _cell(v: Any) -> Any:
    if isinstance(v, list):
        return " / ".join(str(x) for x in v)
    if isinstance(v, dict):
        return ", ".join(f"{k} {x}" for k, x in v.items())
    return v


def latency(r: dict[str, Any]) -> list[str]:
    rows = [x for x in r["rows"] if "error" not in x]
    variant_path = RESULTS / "latency_think.json"
    variant = json.loads(variant_path.read_text(encoding="utf-8")) if variant_path.exists() else None
    vrows = [x for x in (variant or {}).get("rows", []) if "error" not in x]
    fig = "latency.png"
    if rows:
        f, ax = plt.subplots(figsize=(6.5, 3.6))
        for x in [*rows, *vrows]:
            xs = x.get("release_to_open_samples_ms") or []
            if xs:
                label = f"{x['lanes']} lanes, platform think {x['think_s']} s (n={len(xs)})"
                ax.plot(xs, [(i + 1) / len(xs) for i in range(len(xs))], label=label)
        ax.axvline(20, color="red", ls=":", label="goal: p99 < 20 ms")
        ax.axhline(0.99, color="grey", ls=":", lw=0.8)
        ax.set(xlabel="release published → first byte of the open frame (ms)", ylabel="fraction", xscale="log")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
        f.tight_layout()
        f.savefig(FIGS / fig, dpi=90)
        plt.close(f)
    goal = r.get("goal_met")
    verdict = {True: "met", False: "**not met**", None: "not measured at 16 lanes"}[goal]
    errs = [f"- {x['lanes']} lanes: {x['error']}" for x in r["rows"] if "error" in x]
    out = [*_head(r, fig if rows else None), r["table"], "", f"Goal ({r['goal']}): {verdict}.", "", *errs]
    by_gate = [
        {"lanes": x["lanes"], "think s": x["think_s"], "gate": g, "p50": p["p50"], "p95": p["p95"], "p99": p["p99"],
         "n": p["n"]}
        for x in [*rows, *vrows] for g, p in (x.get("release_to_open_by_gate_ms") or {}).items()
    ]  # fmt: skip
    if by_gate:
        out += ["release → open by gate link (ms):", "", markdown_table(by_gate, list(by_gate[0])), ""]
    if variant is not None:
        out += [
            f"The same with the platform answering after its usual think time: `{variant['command']}` "
            f"(`bench/results/latency_think.json`; {_machine(variant)}):",
            "",
            variant["table"],
            "",
        ]
    return out


def soak(r: dict[str, Any]) -> list[str]:
    out = _soak(r, "soak.png")
    for name, title in (("soak_long", "A longer run with fewer lanes:"),
                        ("soak_heap", "Python's heap traced (tracemalloc) while RSS grows:")):  # fmt: skip
        path = RESULTS / f"{name}.json"
        if path.exists():
            out += [title, "", *_soak(json.loads(path.read_text(encoding="utf-8")), f"{name}.png", name=name)]
    return out


def _soak(r: dict[str, Any], fig: str, name: str = "soak") -> list[str]:
    series = r.get("series") or {}
    names = [("rss_mb", "RSS (MB)"), ("threads", "threads"), ("fds", "open fds"), ("tasks", "asyncio tasks"),
             ("outbox_depth", "outbox depth"), ("outbox_retained", "outbox retained (by design)")]  # fmt: skip
    if any(y is not None for s in series.values() for y in s.get("py_heap_mb", [])):
        names.append(("py_heap_mb", "Python heap (tracemalloc, MB)"))
    if series:
        f, axes = plt.subplots(2, (len(names) + 1) // 2, figsize=(4 * ((len(names) + 1) // 2), 6))
        for ax, (key, label) in zip(axes.flat, names, strict=False):
            for unit, s in series.items():
                pts = [(t, y) for t, y in zip(s["t_min"], s.get(key, []), strict=False) if y is not None]
                if pts:
                    ax.plot([p[0] for p in pts], [p[1] for p in pts], lw=0.9, label=unit)
            ax.set(title=label, xlabel="simulated minutes")
            ax.grid(alpha=0.3)
        for ax in list(axes.flat)[len(names) :]:
            ax.axis("off")
        axes.flat[0].legend(fontsize=6, ncol=2)
        f.tight_layout()
        f.savefig(FIGS / fig, dpi=90)
        plt.close(f)
    verdict = "flat (pass)" if r.get("flat") else f"**growth**: {', '.join(r.get('not_flat') or [])}"
    summary = (
        f"{r['lanes']} lanes + scanner, {r['sim_minutes']:.0f} simulated minutes ({r['wall_s']:.0f} s wall at "
        f"time factor {r['time_factor']}), {r['passages']} passages; daemons died: {r['daemons_died'] or 'none'}; "
        f"verdict: {verdict}."
    )
    ran_out = r.get("lanes_out_of_vehicles")
    if ran_out:
        summary += f" Lanes out of vehicles before the end: {', '.join(ran_out)}."
    head = _head(r, fig if series else None)
    head[0] = f"`{r['command']}` (result: `bench/results/{name}.json`)"
    return [*head, summary, "", r["table"], ""]


def recognition(r: dict[str, Any]) -> list[str]:
    if not r.get("ok"):
        return [f"`{r['command']}`: {r.get('error')}", ""]
    extra = (
        f"Frames: {r['source']}; onnxruntime threads: {r['threads']}; peak RSS {r['peak_rss_mb']} MB; "
        f"load average {r['loadavg_before'][0]} → {r['loadavg_after'][0]}."
    )
    return [*_head(r, None), extra, "", r["table"], ""]


RENDER = {"lanes": lanes, "latency": latency, "soak": soak, "recognition": recognition}


def main() -> int:
    FIGS.mkdir(exist_ok=True)
    doc = DOC.read_text(encoding="utf-8")
    for name, fn in RENDER.items():
        path = RESULTS / f"{name}.json"
        start, end = f"<!-- bench:{name} -->", f"<!-- /bench:{name} -->"
        if not path.exists() or start not in doc:
            print(f"render: skipped {name} ({'no result' if not path.exists() else 'no block in the doc'})")
            continue
        block = "\n".join([start, *fn(json.loads(path.read_text(encoding="utf-8"))), end])
        doc = re.sub(re.escape(start) + ".*?" + re.escape(end), lambda _m, b=block: b, doc, flags=re.S)
        print(f"render: {name}")
    DOC.write_text(doc, encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
