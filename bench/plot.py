#!/usr/bin/env python3
"""Plots from pushgate-bench result JSON files, as hand-written SVG (no
dependency beyond Python 3.8's standard library).

  python3 bench/plot.py --latency bench/results/<ts> --sweep bench/results/<ts2>

--latency DIR|FILE...  runs of one paced scenario (--scenario, default latency):
                       latency percentile curve per target, p0 .. p99.999 and max
                       (from `lat_percentiles`; older files only have p50/p99/p999/max,
                       which are plotted as points) → OUT/bench-latency.svg
--sweep DIR|FILE...    burst runs at several connection counts (bench/sweep.sh):
                       deliveries/s against connections → OUT/bench-throughput.svg
--out DIR              where the SVGs go (default: docs/ next to bench/)

With several repeats of one point, the median is plotted (the run with the
median p99 for latency curves) and the range drawn as a whisker.
"""

import argparse
import glob
import json
import math
import os
import statistics
import sys

W, H = 800, 480
ML, MR, MT, MB = 78, 190, 80, 58  # margins; legend on the right
PALETTE = {
    "pushgate": "#d62728",
    "go-hub": "#1f77b4",
    "go-seed": "#17becf",
    "rust-naive": "#2ca02c",
    "node-ws": "#9467bd",
}
EXTRA = ["#ff7f0e", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22"]
ORDER = ["pushgate", "go-seed", "go-hub", "node-ws", "rust-naive"]


def color(target, i):
    return PALETTE.get(target, EXTRA[i % len(EXTRA)])


def esc(s):
    return str(s).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def load(paths):
    runs = []
    for p in paths:
        files = sorted(glob.glob(os.path.join(p, "*.json"))) if os.path.isdir(p) else [p]
        for f in files:
            try:
                with open(f) as fh:
                    r = json.load(fh)
            except (OSError, ValueError) as e:
                print(f"skipping {f}: {e}", file=sys.stderr)
                continue
            if isinstance(r, dict) and "scenario" in r and "target" in r:
                r["_file"] = f
                runs.append(r)
    return runs


def targets_in(runs):
    seen = []
    for r in runs:
        if r["target"] not in seen:
            seen.append(r["target"])
    return sorted(seen, key=lambda t: (ORDER.index(t) if t in ORDER else len(ORDER), t))


class Svg:
    def __init__(self, title, subtitle, note=""):
        self.parts = [
            f'<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" '
            f'viewBox="0 0 {W} {H}" font-family="DejaVu Sans, Arial, sans-serif" font-size="12">',
            f'<rect width="{W}" height="{H}" fill="white"/>',
            f'<text x="{ML}" y="24" font-size="16" font-weight="bold">{esc(title)}</text>',
            f'<text x="{ML}" y="44" fill="#555">{esc(subtitle)}</text>',
            f'<text x="{ML}" y="62" fill="#555" font-size="11">{esc(note)}</text>',
        ]
        self.x0, self.x1 = ML, W - MR
        self.y0, self.y1 = H - MB, MT

    def add(self, s):
        self.parts.append(s)

    def line(self, x1, y1, x2, y2, stroke="#000", width=1, dash=None):
        d = f' stroke-dasharray="{dash}"' if dash else ""
        self.add(f'<line x1="{x1:.1f}" y1="{y1:.1f}" x2="{x2:.1f}" y2="{y2:.1f}" '
                 f'stroke="{stroke}" stroke-width="{width}"{d}/>')

    def text(self, x, y, s, anchor="middle", size=12, fill="#000", rotate=None):
        t = f' transform="rotate({rotate} {x:.1f} {y:.1f})"' if rotate is not None else ""
        self.add(f'<text x="{x:.1f}" y="{y:.1f}" text-anchor="{anchor}" font-size="{size}" '
                 f'fill="{fill}"{t}>{esc(s)}</text>')

    def polyline(self, pts, stroke, width=2):
        p = " ".join(f"{x:.1f},{y:.1f}" for x, y in pts)
        self.add(f'<polyline points="{p}" fill="none" stroke="{stroke}" stroke-width="{width}" '
                 f'stroke-linejoin="round"/>')

    def circle(self, x, y, r, fill, stroke=None):
        s = f' stroke="{stroke}" stroke-width="1.5"' if stroke else ""
        self.add(f'<circle cx="{x:.1f}" cy="{y:.1f}" r="{r}" fill="{fill}"{s}/>')

    def frame(self, xlabel, ylabel):
        self.add(f'<rect x="{self.x0}" y="{self.y1}" width="{self.x1 - self.x0}" '
                 f'height="{self.y0 - self.y1}" fill="none" stroke="#333"/>')
        self.text((self.x0 + self.x1) / 2, H - 14, xlabel)
        self.text(20, (self.y0 + self.y1) / 2, ylabel, rotate=-90)

    def legend(self, items):
        x, y = self.x1 + 16, self.y1 + 8
        for label, col, note in items:
            self.line(x, y, x + 24, y, col, 3)
            self.text(x + 30, y + 4, label, anchor="start")
            if note:
                self.text(x + 30, y + 18, note, anchor="start", size=10, fill="#555")
                y += 14
            y += 22

    def save(self, path):
        self.add("</svg>")
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        with open(path, "w") as f:
            f.write("\n".join(self.parts) + "\n")
        print(f"wrote {path}")


def nice_up(v):
    """Smallest 1-2-5 × 10^k at or above v (> 0)."""
    e = math.floor(math.log10(v))
    return next(m * 10 ** k for k in (e, e + 1) for m in (1, 2, 5) if m * 10 ** k >= v)


def nice_down(v):
    """Largest 1-2-5 × 10^k at or below v (> 0)."""
    e = math.floor(math.log10(v))
    return next(m * 10 ** k for k in (e, e - 1) for m in (5, 2, 1) if m * 10 ** k <= v)


def log_ticks(lo, hi):
    """1-2-5 ticks covering [lo, hi] (lo > 0)."""
    out = []
    e = math.floor(math.log10(lo))
    while 10 ** e <= hi * 10:
        for m in (1, 2, 5):
            v = m * 10 ** e
            if lo <= v <= hi:
                out.append(v)
        e += 1
    return out


def lin_ticks(hi, n=6):
    raw = hi / n
    mag = 10 ** math.floor(math.log10(raw))
    step = next(m * mag for m in (1, 2, 2.5, 5, 10) if m * mag >= raw)
    return [i * step for i in range(int(hi / step) + 2) if i * step <= hi * 1.0001]


def fmt_val(v):
    if v >= 100:
        return f"{v:,.0f}"
    return f"{v:.1f}" if v >= 10 else f"{v:.2f}"


def fmt_ms(v):
    if v >= 10:
        return f"{v:.0f}"
    if v >= 1:
        return f"{v:g}"
    return f"{v:.2g}"


def nines(p):
    """Percentile → x on the 'nines' scale: 90 → 1, 99 → 2, 99.9 → 3."""
    return -math.log10(max(1e-9, 1 - p / 100))


def curve(r):
    """[(percentile, ms)] of one run; 100 stands for max."""
    if r.get("lat_percentiles"):
        return [(p, v / 1000) for p, v in r["lat_percentiles"]]
    pts = [(50, r.get("lat_p50_us")), (99, r.get("lat_p99_us")),
           (99.9, r.get("lat_p999_us")), (100, r.get("lat_max_us"))]
    return [(p, v / 1000) for p, v in pts if v]


def plot_latency(runs, scenario, out, note):
    runs = [r for r in runs if r["scenario"] == scenario and r.get("lat_p99_us")]
    if not runs:
        print(f"no {scenario} runs with latency data", file=sys.stderr)
        return False
    MAX_X = nines(99.999) + 0.6  # where "max" is drawn
    series = []
    for t in targets_in(runs):
        rs = sorted((r for r in runs if r["target"] == t), key=lambda r: r["lat_p99_us"])
        pick = rs[(len(rs) - 1) // 2]  # the run with the median p99
        pts = [(MAX_X if p >= 100 else nines(p), v) for p, v in curve(pick)]
        lost = sum(r.get("lost", 0) for r in rs)
        label = f"p50 {fmt_val(pick['lat_p50_us'] / 1000)}, p99 {fmt_val(pick['lat_p99_us'] / 1000)} ms"
        if len(rs) > 1:
            label += f" ({len(rs)} runs)"
        if lost:
            label += f"; {lost} lost"
        series.append((t, pts, label, pick))
    vals = [v for _, pts, _, _ in series for _, v in pts if v > 0]
    lo, hi = nice_down(min(vals)), nice_up(max(vals))
    r0 = series[0][3]
    secs = r0.get("published", 0)
    sub = (f"{r0['conns']:,} connections, {r0.get('size', 100)} B payloads, "
           f"{secs:,} publications paced; publish → receive, loopback")
    g = Svg(f"Latency distribution ({scenario} scenario)", sub, note)
    X = lambda x: g.x0 + (g.x1 - g.x0) * x / (MAX_X + 0.1)
    Y = lambda v: g.y0 - (g.y0 - g.y1) * (math.log10(max(v, lo)) - math.log10(lo)) / (
        math.log10(hi) - math.log10(lo))
    for v in log_ticks(lo, hi):
        g.line(g.x0, Y(v), g.x1, Y(v), "#ddd")
        g.text(g.x0 - 6, Y(v) + 4, fmt_ms(v), anchor="end")
    ticks = [(0, "p0"), (nines(50), "p50"), (1, "p90"), (2, "p99"), (3, "p99.9"),
             (4, "p99.99"), (5, "p99.999"), (MAX_X, "max")]
    for x, label in ticks:
        g.line(X(x), g.y0, X(x), g.y1, "#eee")
        g.text(X(x), g.y0 + 16, label)
    g.frame("percentile (log scale of 1 / (1 − p))", "latency, ms (log scale)")
    legend = []
    for i, (t, pts, label, _) in enumerate(series):
        col = color(t, i)
        w = 3 if t.startswith("pushgate") else 2
        main = [(X(x), Y(v)) for x, v in pts if x < MAX_X]
        if len(main) > 1:
            g.polyline(main, col, w)
        for x, v in pts:
            if x >= MAX_X or len(main) <= 4:
                g.circle(X(x), Y(v), 3.5, col)
        legend.append((t, col, label))
    g.legend(legend)
    g.save(os.path.join(out, "bench-latency.svg"))
    return True


def plot_sweep(runs, out, note):
    runs = [r for r in runs if r["scenario"] == "burst" and r.get("deliveries_per_sec")]
    if not runs:
        print("no burst runs for the throughput plot", file=sys.stderr)
        return False
    series = []
    for t in targets_in(runs):
        by_n = {}
        for r in runs:
            if r["target"] == t:
                by_n.setdefault(r["conns"], []).append(r)
        pts = []
        for n in sorted(by_n):
            v = [r["deliveries_per_sec"] for r in by_n[n]]
            lost = sum(r.get("lost", 0) for r in by_n[n])
            pts.append((n, statistics.median(v), min(v), max(v), lost))
        series.append((t, pts))
    xmax = max(n for _, pts in series for n, *_ in pts) * 1.05
    ymax = max(hi for _, pts in series for _, _, _, hi, _ in pts) * 1.1
    reps = max(len([r for r in runs if r["target"] == t and r["conns"] == n])
               for t, pts in series for n, *_ in pts)
    sub = (f"burst: ~1M deliveries per point, {runs[0].get('size', 100)} B payloads, loopback; "
           f"{'median of ' + str(reps) + ' runs, whisker min–max' if reps > 1 else 'one run per point'}")
    g = Svg("Deliveries per second against connections", sub, note)
    X = lambda n: g.x0 + (g.x1 - g.x0) * n / xmax
    Y = lambda v: g.y0 - (g.y0 - g.y1) * v / ymax
    for v in lin_ticks(ymax / 1e6):
        g.line(g.x0, Y(v * 1e6), g.x1, Y(v * 1e6), "#ddd")
        g.text(g.x0 - 6, Y(v * 1e6) + 4, f"{v:g}M" if v else "0", anchor="end")
    for n in lin_ticks(xmax):
        g.line(X(n), g.y0, X(n), g.y1, "#eee")
        g.text(X(n), g.y0 + 16, f"{n / 1000:g}k" if n else "0")
    g.frame("connections", "deliveries / s (first publish → last delivery)")
    legend = []
    for i, (t, pts) in enumerate(series):
        col = color(t, i)
        g.polyline([(X(n), Y(m)) for n, m, *_ in pts], col, 3 if t.startswith("pushgate") else 2)
        for n, m, lo, hi, lost in pts:
            if hi > lo:
                g.line(X(n), Y(lo), X(n), Y(hi), col, 1.5)
            # Hollow marker: some deliveries were lost at this point.
            g.circle(X(n), Y(m), 4, "white" if lost else col, col if lost else None)
        legend.append((t, col, "hollow: loss" if any(p[4] for p in pts) else None))
    g.legend(legend)
    g.save(os.path.join(out, "bench-throughput.svg"))
    return True


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--latency", nargs="*", default=[], metavar="PATH")
    ap.add_argument("--sweep", nargs="*", default=[], metavar="PATH")
    ap.add_argument("--scenario", default="latency", help="scenario for --latency")
    ap.add_argument("--out", default=os.path.join(here, "..", "docs"))
    ap.add_argument("--note", default="", help="third title line (machine, commit)")
    a = ap.parse_args()
    if not a.latency and not a.sweep:
        ap.error("give --latency and/or --sweep result directories or files")
    ok = True
    if a.latency:
        ok &= plot_latency(load(a.latency), a.scenario, a.out, a.note)
    if a.sweep:
        ok &= plot_sweep(load(a.sweep), a.out, a.note)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
