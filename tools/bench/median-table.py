#!/usr/bin/env python3
"""median-table.py: medians over repeated runs of compare.sh -c FILE (or siw-bench --csv FILE).

    tools/bench/median-table.py run1.csv run2.csv run3.csv

compare.sh CSVs (first column "size"): prints, per size, the median of each column over the
runs, then the median over runs of each column's ratio to the TCP column of the same run
(tcp_bw for *_bw columns, tcp_lat for *_lat columns), as docs/PERFORMANCE.md quotes them.
siw-bench CSVs (first column "op"): the medians of siw_gbps, tcp_gbps, the per-run ratio,
siw/tcp CPU per byte and the latencies, per op and size.
"""
import csv
import statistics
import sys


def num(x):
    try:
        return float(x)
    except (TypeError, ValueError):
        return None


def med(vals):
    vals = [v for v in vals if v is not None]
    return statistics.median(vals) if vals else None


def hsize(s):
    s = int(s)
    if s % 1048576 == 0:
        return f"{s // 1048576}M"
    if s % 1024 == 0:
        return f"{s // 1024}K"
    return str(s)


def fmt(v, nd=3):
    return "-" if v is None else f"{v:.{nd}f}"


def compare_tables(runs):
    cols = [c for c in runs[0][0].keys() if c != "size"]
    sizes = [r["size"] for r in runs[0]]
    for kind, tcp in (("bw", "tcp_bw"), ("lat", "tcp_lat")):
        kc = [c for c in cols if c.endswith("_" + kind)]
        title = "bandwidth GB/s" if kind == "bw" else "latency us"
        print(f"== {title}, median of {len(runs)} runs")
        print(f"{'size':>6}" + "".join(f" {c:>13}" for c in kc))
        for i, s in enumerate(sizes):
            print(f"{hsize(s):>6}" + "".join(
                f" {fmt(med([num(r[i].get(c)) for r in runs])):>13}" for c in kc))
        print(f"== {title} / TCP of the same run, median of {len(runs)} runs")
        print(f"{'size':>6}" + "".join(f" {c:>13}" for c in kc))
        for i, s in enumerate(sizes):
            row = []
            for c in kc:
                rs = []
                for r in runs:
                    x, t = num(r[i].get(c)), num(r[i].get(tcp))
                    rs.append(x / t if x is not None and t else None)
                row.append(fmt(med(rs), 2))
            print(f"{hsize(s):>6}" + "".join(f" {v:>13}" for v in row))
        print()


def bench_tables(runs):
    keys = [(r["op"], r["size"]) for r in runs[0]]
    print(f"== siw-bench, median of {len(runs)} runs (ratio: median of the per-run ratios)")
    print(f"{'op':>6} {'size':>6} {'siw GB/s':>9} {'TCP GB/s':>9} {'ratio':>6} {'siw ns/B':>9}"
          f" {'TCP ns/B':>9} {'siw us':>8} {'TCP us':>8} {'ratio':>6}")
    for i, (op, s) in enumerate(keys):
        g = lambda c: med([num(r[i].get(c)) for r in runs])
        bwr = med([num(r[i]["siw_gbps"]) / num(r[i]["tcp_gbps"])
                   if num(r[i]["siw_gbps"]) is not None and num(r[i]["tcp_gbps"]) else None
                   for r in runs])
        latr = med([num(r[i]["siw_lat_med_us"]) / num(r[i]["tcp_lat_med_us"])
                    if num(r[i]["siw_lat_med_us"]) is not None and num(r[i]["tcp_lat_med_us"])
                    else None for r in runs])
        print(f"{op:>6} {hsize(s):>6} {fmt(g('siw_gbps')):>9} {fmt(g('tcp_gbps')):>9}"
              f" {fmt(bwr, 2):>6} {fmt(g('siw_cpu_ns_per_byte'), 2):>9}"
              f" {fmt(g('tcp_cpu_ns_per_byte'), 2):>9} {fmt(g('siw_lat_med_us'), 1):>8}"
              f" {fmt(g('tcp_lat_med_us'), 1):>8} {fmt(latr, 2):>6}")


def main():
    if len(sys.argv) < 2:
        print(__doc__.strip(), file=sys.stderr)
        return 2
    runs = []
    for path in sys.argv[1:]:
        with open(path, newline="") as f:
            runs.append(list(csv.DictReader(f)))
    if not all(runs):
        print("median-table.py: an empty CSV", file=sys.stderr)
        return 1
    if "size" == list(runs[0][0].keys())[0]:
        compare_tables(runs)
    else:
        bench_tables(runs)
    return 0


if __name__ == "__main__":
    sys.exit(main())
