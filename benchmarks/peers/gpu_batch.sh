#!/usr/bin/env bash
# Issue 19's peer runs that one CPU core cannot converge in a session, side by side on one GPU.
#
#   bash benchmarks/peers/gpu_batch.sh SPLITS OUT [BUDGET_SECONDS]
#
# SPLITS holds amazon-beauty/ and yoochoose-100k/, each the exported leave-one-out files (train/valid/test.inter,
# optionally gzipped) that benchmarks/quality.py writes to <work_dir>/<dataset>/loo/recbole_files. Every run is a
# runner of this folder with --accelerator gpu, started at once (one GPU, 2 threads each); each stops by its own
# early stopping (patience 10 on our validation NDCG@10) or, failing that, after the epoch that crosses the budget
# (then its result says "budget" and quality.py continues it on the next run of the same row). The runners' result
# files land in OUT as <dataset>_<row>.json (quality.py's peer.json), with each run's log beside it. The python on
# PATH must import the peers (rectools 0.19.0 with pandas<3 and pytorch-lightning 2.5.2; replay-rec 0.22.0 with
# lightning). ONLY=REGEX runs only the <dataset>_<row> names it matches.
set -uo pipefail
SPLITS="$(cd "${1:?usage: gpu_batch.sh SPLITS OUT [BUDGET_SECONDS]}" && pwd)"
OUT="$(mkdir -p "${2:?OUT}" && cd "$2" && pwd)"
BUDGET="${3:-470}"
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
RUNS="${RUNS_DIR:-$(mktemp -d)}"

for f in "$SPLITS"/*/*.inter.gz; do [ -e "$f" ] && gunzip -kf "$f"; done

# the runners' default preset is our equal size (64 hidden, 2 layers, 2 heads); RecTools' authors' Beauty settings
# come from peer_io.PUBLISHED_SETTINGS, as quality.py's rectools-sasrec-published row takes them
read -ra PUBLISHED <<<"$(python3 -c "import sys; sys.path.insert(0, '$HERE'); import peer_io
print(*peer_io.PUBLISHED_SETTINGS['rectools-sasrec-published']['amazon-beauty'])")"

run() {  # run NAME DATASET RUNNER FLAGS...
    local name="$1" dataset="$2" runner="$3"
    shift 3
    [[ "${dataset}_$name" =~ ${ONLY:-.} ]] || return 0
    python3 "$HERE/$runner" --split_dir "$SPLITS/$dataset" --max_len 50 "$@" --threads 2 --accelerator gpu \
        --budget_seconds "$BUDGET" --valid_setting excluded --eval_batch_size 1024 \
        --run_dir "$RUNS/${dataset}_$name" --output "$OUT/${dataset}_$name.json" >"$OUT/${dataset}_$name.log" 2>&1
    echo "[gpu_batch] ${dataset}_$name exit $? after ${SECONDS}s"
}

run rectools-sasrec amazon-beauty rectools_run.py --model SASRec &
run rectools-bert4rec amazon-beauty rectools_run.py --model BERT4Rec &
run rectools-sasrec-published amazon-beauty rectools_run.py --model SASRec "${PUBLISHED[@]}" &
run replay-sasrec amazon-beauty replay_run.py --loss CE &
run rectools-bert4rec yoochoose-100k rectools_run.py --model BERT4Rec &
wait
for log in "$OUT"/*.log; do echo "== $log"; grep -E "^epoch|Error|error" "$log" | tail -4; done
