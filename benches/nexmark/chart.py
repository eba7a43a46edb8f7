"""Renders results.csv (Nexmark events per engine CPU-second) as a horizontal bar chart.

python3 benches/nexmark/chart.py > docs/benchmarks/nexmark-engines.svg
"""
import csv
import os
from html import escape

HERE = os.path.dirname(os.path.abspath(__file__))
BAR_H, GAP, LABEL_W, PLOT_W, TITLE_H = 22, 6, 430, 380, 30


def main():
    with open(os.path.join(HERE, "results.csv")) as f:
        rows = list(csv.DictReader(f))
    top = max(int(r["events_per_cpu_s"]) for r in rows)
    queries = list(dict.fromkeys(r["query"] for r in rows))
    height = TITLE_H + sum(TITLE_H + (BAR_H + GAP) * sum(r["query"] == q for r in rows) for q in queries) + 20
    width = LABEL_W + PLOT_W + 110
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" font-family="sans-serif" font-size="12">',
           f'<rect width="{width}" height="{height}" fill="white"/>',
           '<text x="10" y="20" font-size="14" font-weight="bold">Nexmark: input events per engine CPU-second (2 cores; higher is better)</text>']
    y = TITLE_H
    for q in queries:
        y += TITLE_H
        out.append(f'<text x="10" y="{y - 8}" font-weight="bold">{escape(q)}</text>')
        for r in (r for r in rows if r["query"] == q):
            value = int(r["events_per_cpu_s"])
            w = max(1, round(PLOT_W * value / top))
            colour = "#2b6cb0" if r["engine"].startswith("Rivulet") else "#a0aec0"
            out.append(f'<text x="10" y="{y + 15}">{escape(r["engine"])}</text>')
            out.append(f'<rect x="{LABEL_W}" y="{y}" width="{w}" height="{BAR_H}" fill="{colour}"/>')
            out.append(f'<text x="{LABEL_W + w + 6}" y="{y + 15}">{value:,}</text>')
            y += BAR_H + GAP
    out.append("</svg>")
    print("\n".join(out))


if __name__ == "__main__":
    main()
