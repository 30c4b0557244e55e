#!/usr/bin/env bash
# The GPU models of issue 13 on one GPU host (16 cores): the hGCA stages and a plain GCA trained in parallel
# processes, each within a wall-clock budget, data simulated by worker processes, then the hGCA bundle.
#   scripts/train_completion_gpu.sh RUN_DIR [RESULTS_DIR]
# Environment (defaults in brackets):
#   DEVICE [cuda]; EXTRA: more `--set` overrides for every stage
#   COARSE_S [440] / GCA_S [440] / AE_S [140] / FINE_S [280]: each stage's training seconds (validation excluded)
#   COARSE_WORKERS [5] / GCA_WORKERS [3] / FINE_WORKERS [6]: data-simulation processes per stage (16 cores: the
#     trainers get 2 intra-op threads each, the workers the rest; oversubscribing the cores starved the GCA at
#     0.49 it/s in an earlier run)
#   INIT_COARSE / INIT_GCA: warm start from these weights (e.g. gen3d_ros/models/hgca_demo.pt:coarse); the stages
#     keep the architecture, so training continues on the new data instead of starting over
#   SKIP_GCA=1: no plain GCA; THROUGHPUT=1: first measure the data-worker speed-up (training/throughput.py)
# Smoke test on a CPU: DEVICE=cpu COARSE_S=5 GCA_S=5 AE_S=5 FINE_S=5 COARSE_WORKERS=1 GCA_WORKERS=1 FINE_WORKERS=1
set -u
DEVICE=${DEVICE:-cuda}
EXTRA=${EXTRA:-}
RUN=${1:-runs/gpu_rich}
RES=${2:-$RUN}
mkdir -p "$RUN" "$RES"
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-2}
if [ -n "${THROUGHPUT:-}" ]; then
  # from a file, not stdin: spawned data workers re-import the main module by its path
  cat > "$RUN/throughput_run.py" <<'PY'
import json, sys
from gen3d_ros.completion.training.throughput import measure_train_throughput
if __name__ == "__main__":
    out = {}
    for stage in ("autoencoder", "fine"):
        for workers in (0, 12):
            r = measure_train_throughput(stage, "gpu_rich", device="cuda", steps=6, warmup=2,
                                         overrides={"data_workers": workers})
            out[f"{stage}.workers{workers}"] = {k: r[k] for k in ("iters_per_s", "data_fraction", "batch_size")}
            print(stage, workers, out[f"{stage}.workers{workers}"], flush=True)
    json.dump(out, open(sys.argv[1], "w"), indent=1)
PY
  python "$RUN/throughput_run.py" "$RES/throughput.json"
fi
G="python -m gen3d_ros -q train-completion --device $DEVICE"
init() { [ -n "$1" ] && echo "--set init_checkpoint=$1"; }
$G --stage transition --preset gpu_rich_planner --set "time_limit_s=${COARSE_S:-440}" \
   --set "data_workers=${COARSE_WORKERS:-5}" $(init "${INIT_COARSE:-}") $EXTRA -o "$RUN/hgca/coarse" \
   > "$RUN/coarse.log" 2>&1 &
if [ -z "${SKIP_GCA:-}" ]; then
  nice -n 5 $G --stage transition --preset gpu_rich --set "time_limit_s=${GCA_S:-440}" \
     --set "data_workers=${GCA_WORKERS:-3}" $(init "${INIT_GCA:-}") $EXTRA -o "$RUN/gca" > "$RUN/gca.log" 2>&1 &
fi
( $G --stage autoencoder --preset gpu_rich --set "time_limit_s=${AE_S:-140}" \
     --set "data_workers=${FINE_WORKERS:-6}" $EXTRA -o "$RUN/hgca/autoencoder" &&
  $G --stage fine --preset gpu_rich --set "autoencoder=$RUN/hgca/autoencoder/model.pt" \
     --set "time_limit_s=${FINE_S:-280}" --set "data_workers=${FINE_WORKERS:-6}" $EXTRA -o "$RUN/hgca/fine" ) \
  > "$RUN/ae_fine.log" 2>&1 &
wait
python -c "
from gen3d_ros.completion.training.hierarchy import train_hierarchy
train_hierarchy('gpu_rich', '$RUN/hgca', device='$DEVICE', progress=False,
                command='scripts/train_completion_gpu.sh (gen3d train-completion --preset gpu_rich*, parallel)')"
