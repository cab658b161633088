#!/usr/bin/env bash
# Train several teachers side by side on one GPU for a fixed wall-clock budget, then save their
# outputs on every train/val image with `emolens teach` — the small file a CPU student is
# distilled from (`emolens train --teacher`). Every step is the project's own CLI.
#
#   scripts/gpu_teachers.sh OUT_DIR BUDGET_S DATA_SPEC TEACH_SPEC "NAME|MODEL ARGS[|DATA_SPEC]" ...
#
# DATA_SPEC is the --data of the teachers' training (e.g. "fer2013.npz,votes=votes.csv,label_mix=0.5";
# several sources separated by ";"), unless a teacher gives its own after a second "|"; TEACH_SPEC is
# the --data of `emolens teach` (";" likewise). A teacher whose timing run fails is left out.
# The epoch count is chosen from a timed 2-epoch run of
# all teachers together so that training ends inside BUDGET_S; the exact commands are written to
# OUT_DIR/commands.txt. A run stopped by the time guard still leaves its best checkpoint for `teach`.
# Teachers whose ARGS hold `--holdout K/N` (one run per fold) get cross-fitted outputs: `teach` labels
# each training image only with the runs that left it out (docs/training.md).
set -uo pipefail
out=$1 budget=$2 data=$3 teach_data=$4
shift 4
teachers=("$@")
emolens=(python3 -m emolens)
device=${DEVICE:-cuda}
common=(--contrast equalize --early-stopping 0 --scheduler cosine --device "$device" --cache-dir "$out/cache")
mkdir -p "$out/runs"

data_args() {  # data_args "A;B" -> --data A --data B
  local specs spec
  IFS=';' read -ra specs <<<"$1"
  for spec in "${specs[@]}"; do printf -- '--data\n%s\n' "$spec"; done
}

run_all() {  # run_all EPOCHS SUFFIX TIME_LIMIT_S: every teacher at once
  local pids=() spec name rest own
  for spec in "${teachers[@]}"; do
    IFS='|' read -r name rest own <<<"$spec"
    read -ra args <<<"$rest"
    mapfile -t dargs < <(data_args "${own:-$data}")
    echo "emolens train ${dargs[*]} --arch ${args[*]} ${common[*]} --epochs $1 --out runs/$name" >>"$out/commands$2.txt"
    timeout "$3" "${emolens[@]}" train "${dargs[@]}" --arch "${args[@]}" "${common[@]}" --epochs "$1" \
      --out "$out/runs/$name$2" >"$out/runs/$name$2.log" 2>&1 &
    pids+=($!)
  done
  wait "${pids[@]}"
}

t0=$(date +%s)
run_all 2 .timing 300
ok=()
for spec in "${teachers[@]}"; do
  if [ -s "$out/runs/${spec%%|*}.timing/history.csv" ]; then ok+=("$spec")
  else echo "timing run ${spec%%|*} failed, left out:"; tail -n 5 "$out/runs/${spec%%|*}.timing.log"; fi
done
teachers=("${ok[@]}")
[ ${#teachers[@]} -gt 0 ] || exit 1
slowest=$(python3 - "$out" "${teachers[@]}" <<'PY'
import csv, sys
out, names = sys.argv[1], [t.split("|")[0] for t in sys.argv[2:]]
print(max(float(list(csv.DictReader(open(f"{out}/runs/{n}.timing/history.csv")))[-1]["epoch_s"]) for n in names))
PY
)
left=$(( budget - ($(date +%s) - t0) ))
epochs=$(python3 -c "print(max(0, int($left / ($slowest * 1.1))))" 2>/dev/null || echo 0)
echo "slowest epoch ${slowest}s with all teachers running; ${left}s left: ${epochs} epochs"
[ "$epochs" -ge 1 ] || exit 1
run_all "$epochs" "" $((left + 60))
for spec in "${teachers[@]}"; do tail -n 2 "$out/runs/${spec%%|*}.log"; done
models=()
for spec in "${teachers[@]}"; do models+=("$out/runs/${spec%%|*}"); done
# Each teacher's weights come back too, as float16-weight ONNX (a few MB; a fine-tuned teacher can ship
# as a bundled model), written before the outputs, whose report is what `gpu_lease.sh wait` waits for.
mkdir -p "$out/weights"
for spec in "${teachers[@]}"; do
  name=${spec%%|*}
  "${emolens[@]}" export "$out/runs/$name" --out "$out/weights/$name.onnx" --fp16-weights --samples 256 \
    --cache-dir "$out/cache" >"$out/weights/$name.export.log" 2>&1 || echo "export of $name failed: see weights/$name.export.log"
done
mapfile -t dargs < <(data_args "$teach_data")
"${emolens[@]}" teach "${models[@]}" "${dargs[@]}" --out "$out/teacher.npz" --device "$device" --batch-size 1024 \
  --cache-dir "$out/cache"
