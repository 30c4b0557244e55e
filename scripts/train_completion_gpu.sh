#!/usr/bin/env bash
# The GPU models of issue 13 on one GPU host (16 cores): the hGCA stages and a plain GCA trained in parallel
# processes, each within a wall-clock budget (the presets' time_limit_s), data simulated by worker processes
# (the presets' data_workers), then the hGCA bundle. Before training, the data-worker speed-up is measured on
# the autoencoder and fine stages (gen3d_ros/completion/training/throughput.py).
#   scripts/train_completion_gpu.sh RUN_DIR [RESULTS_DIR]
# Smoke test on a CPU: DEVICE=cpu SKIP_THROUGHPUT=1 EXTRA="--set time_limit_s=5 --set data_workers=1 ..."
set -u
DEVICE=${DEVICE:-cuda}
EXTRA=${EXTRA:-}
RUN=${1:-runs/gpu_rich}
RES=${2:-$RUN}
mkdir -p "$RUN" "$RES"
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
[ -n "${SKIP_THROUGHPUT:-}" ] || python "$RUN/throughput_run.py" "$RES/throughput.json"
G="python -m gen3d_ros -q train-completion --device $DEVICE"
$G --stage transition --preset gpu_rich_planner $EXTRA -o "$RUN/hgca/coarse" > "$RUN/coarse.log" 2>&1 &
$G --stage transition --preset gpu_rich $EXTRA -o "$RUN/gca" > "$RUN/gca.log" 2>&1 &
( $G --stage autoencoder --preset gpu_rich $EXTRA -o "$RUN/hgca/autoencoder" &&
  $G --stage fine --preset gpu_rich --set "autoencoder=$RUN/hgca/autoencoder/model.pt" $EXTRA -o "$RUN/hgca/fine" ) \
  > "$RUN/ae_fine.log" 2>&1 &
wait
python -c "
from gen3d_ros.completion.training.hierarchy import train_hierarchy
train_hierarchy('gpu_rich', '$RUN/hgca', device='$DEVICE', progress=False,
                command='scripts/train_completion_gpu.sh (gen3d train-completion --preset gpu_rich*, parallel)')"
