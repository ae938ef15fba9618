#!/usr/bin/env bash
# rcluster_ratio.sh OUT CLUSTER MASTERS: the rcluster phase's medians, one Redis
# vs the Redis Cluster, and their ratio (publications/s accepted, deliveries/s).
set -euo pipefail
out="$1" cluster="$2" masters="$3"
python3 - "$out" "$cluster" "$masters" <<'PY'
import glob, json, statistics, sys
out, cluster, masters = sys.argv[1:]
def med(mode, field):
    vals = []
    for f in glob.glob(f"{out}/{cluster}-rc-{mode}-channels-burst-*.json"):
        v = json.load(open(f)).get(field)
        if v is not None:
            vals.append(v)
    return (statistics.median(vals), len(vals)) if vals else (None, 0)
rows = [("publications/s accepted", "publish_per_sec"), ("deliveries/s", "deliveries_per_sec")]
print()
print(f"| {cluster} channels burst | 1 Redis | {masters}-master Redis Cluster | ratio |")
print("|---|---|---|---|")
for name, field in rows:
    (a, na), (b, nb) = med("1redis", field), med(f"{masters}masters", field)
    ratio = f"{b / a:.2f}" if a and b else "-"
    fa = f"{a:.0f} ({na} runs)" if a else "-"
    fb = f"{b:.0f} ({nb} runs)" if b else "-"
    print(f"| {name} | {fa} | {fb} | {ratio} |")
PY
