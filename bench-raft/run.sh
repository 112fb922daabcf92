#!/usr/bin/env bash
# The openraft log-store benchmark: builds each runner on its own (they
# cannot share one build: see README.md), runs every store on every cell,
# interleaved (each round runs all stores on a cell before the next cell,
# the store order rotating by round), and prints the medians over rounds as
# one table, then the probes behind the targets.
#
#   bench-raft/run.sh            # 3 rounds of 2 s per cell, ~4 minutes
#   ROUNDS=1 SECS=1 bench-raft/run.sh
#   DIR=/path/on/the/disk/to/test bench-raft/run.sh
set -euo pipefail
cd "$(dirname "$0")"
ROUNDS=${ROUNDS:-3}
SECS=${SECS:-2}
DIR=${DIR:-target/bench-data}
REOPEN=${REOPEN:-1000000}

for p in run-directwal run-mem run-sled run-rocks; do
    cargo build --release --quiet -p "$p"
done
mkdir -p "$DIR"
lines=$(mktemp)
trap 'rm -f "$lines"' EXIT

stores=("run-directwal" "run-mem" "run-sled" "run-rocks" "run-rocks --sync")
n=${#stores[@]}
for round in $(seq 1 "$ROUNDS"); do
    for clients in 1 64; do
        for value in 128 4096; do
            for k in $(seq 0 $((n - 1))); do
                read -r -a cmd <<<"${stores[$(((k + round) % n))]}"
                "target/release/${cmd[0]}" "${cmd[@]:1}" --clients "$clients" --value "$value" \
                    --secs "$SECS" --dir "$DIR" | tee -a "$lines" >&2
            done
        done
    done
done

echo "load: $(cut -d' ' -f1-3 /proc/loadavg) (1/5/15 min) at the end; $(nproc) cores"
echo "rounds: $ROUNDS x $SECS s per cell (after 0.5 s warm-up); medians over rounds"
python3 - "$lines" <<'PY'
import collections, statistics, sys
rows = collections.defaultdict(list)
ack = {}
for line in open(sys.argv[1]):
    store, clients, value, wps, p50, p99, bpe, durable = line.split()
    rows[(store, int(clients), int(value))].append((float(wps), float(p50), float(p99), float(bpe)))
    ack[store] = durable
order = ["directwal", "memstore", "sledstore", "rocksstore+sync", "rocksstore"]
print("| store | durable when acked | clients | value | writes/s | p50 µs | p99 µs | bytes written / entry / node |")
print("|---|---|---:|---:|---:|---:|---:|---:|")
med = {}
for clients in (1, 64):
    for value in (128, 4096):
        for store in order:
            r = rows.get((store, clients, value))
            if not r:
                continue
            m = [statistics.median(x) for x in zip(*r)]
            med[(store, clients, value)] = m
            durable = {"yes": "yes", "no": "**no**"}[ack[store]] if store != "memstore" else "no disk"
            print(f"| {store} | {durable} | {clients} | {value} | {m[0]:.0f} | {m[1]:.0f} | {m[2]:.0f} | {m[3]:.0f} |")
def ratio(a, b):
    x, y = med.get((a, 64, 128)), med.get((b, 64, 128))
    return f"{x[0] / y[0]:.2f}" if x and y else "n/a"
print()
print("64 clients, 128 B: directwal /", ", ".join(f"{s} = {ratio('directwal', s)}" for s in order[1:]))
PY
target/release/run-directwal --probe --dir "$DIR"
target/release/run-directwal --codec
target/release/run-directwal --reopen "$REOPEN" --dir "$DIR"
