#!/usr/bin/env python3
"""Turns `quire bench --json` outputs into a markdown table and an SVG chart.

    quire bench -m model.gguf -t 1,2 --json > runs/tinyllama-q4_0.json
    bench/report.py runs/*.json --md bench/results.md --svg bench/results.svg

Each input file is one bench run (its "runs" array has one entry per thread
count). Offline tooling only: nothing in Quire's serving path uses Python.
"""
import argparse
import json
import os
import sys


def load(paths):
    rows = []
    for p in paths:
        with open(p) as f:
            doc = json.load(f)
        name = os.path.splitext(os.path.basename(doc.get("model", p)))[0]
        for r in doc.get("runs", []):
            rows.append({
                "model": name,
                "threads": r["threads"],
                "pp": r["pp_tokens_per_s"], "pp_sd": r.get("pp_sd", 0),
                "tg": r["tg_tokens_per_s"], "tg_sd": r.get("tg_sd", 0),
                "bw": r.get("bandwidth_gb_s", 0),
                "ceiling": r.get("tg_ceiling_tokens_per_s", 0),
                "pct": r.get("tg_roofline_pct", 0),
                "n_prompt": doc.get("n_prompt"), "n_gen": doc.get("n_gen"),
            })
    return rows


def markdown(rows):
    out = ["| model | threads | pp t/s | tg t/s | read GB/s | tg ceiling t/s | tg % of ceiling |",
           "|---|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        out.append(f"| {r['model']} | {r['threads']} | {r['pp']:.1f} ± {r['pp_sd']:.1f} | "
                   f"{r['tg']:.2f} ± {r['tg_sd']:.2f} | {r['bw']:.1f} | {r['ceiling']:.1f} | {r['pct']:.0f}% |")
    return "\n".join(out) + "\n"


def svg(rows, metric, title):
    """Horizontal bar chart, one bar per (model, threads)."""
    bar_h, gap, left, width = 22, 8, 260, 420
    top = 40
    h = top + len(rows) * (bar_h + gap) + 30
    vmax = max([r[metric] for r in rows] + [1e-9])
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{left + width + 90}" height="{h}" '
             f'font-family="sans-serif" font-size="12">',
             f'<text x="10" y="22" font-size="15" font-weight="bold">{title}</text>']
    for i, r in enumerate(rows):
        y = top + i * (bar_h + gap)
        w = width * r[metric] / vmax
        label = f"{r['model']} · {r['threads']}t"
        parts.append(f'<text x="{left - 8}" y="{y + 15}" text-anchor="end">{label}</text>')
        parts.append(f'<rect x="{left}" y="{y}" width="{w:.1f}" height="{bar_h}" fill="#3b7dd8"/>')
        if metric == "tg" and r["ceiling"] > 0:
            cx = left + width * min(r["ceiling"], vmax) / vmax
            parts.append(f'<line x1="{cx:.1f}" y1="{y - 2}" x2="{cx:.1f}" y2="{y + bar_h + 2}" '
                         f'stroke="#d83b3b" stroke-width="2"/>')
        parts.append(f'<text x="{left + w + 6:.1f}" y="{y + 15}">{r[metric]:.1f}</text>')
    if metric == "tg":
        parts.append(f'<text x="{left}" y="{h - 8}" fill="#d83b3b">red line: bandwidth ceiling</text>')
    parts.append("</svg>")
    return "\n".join(parts) + "\n"


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("runs", nargs="+")
    ap.add_argument("--md")
    ap.add_argument("--svg", help="writes NAME with tokens/s of generation; NAME-pp.svg for prompt processing")
    a = ap.parse_args()
    rows = load(a.runs)
    if not rows:
        sys.exit("report: no runs in the input files")
    md = markdown(rows)
    if a.md:
        with open(a.md, "w") as f:
            f.write(md)
    else:
        sys.stdout.write(md)
    if a.svg:
        with open(a.svg, "w") as f:
            f.write(svg(rows, "tg", "Text generation (tg), tokens/s"))
        base, ext = os.path.splitext(a.svg)
        with open(base + "-pp" + ext, "w") as f:
            f.write(svg(rows, "pp", "Prompt processing (pp), tokens/s"))


if __name__ == "__main__":
    main()
