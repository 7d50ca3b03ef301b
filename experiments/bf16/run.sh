#!/usr/bin/env bash
# bf16 against fp32 features on Table 1: extract each dataset's features in bf16 (the fp32 ones
# are the experiments' cache), run Table 1 of our two methods on both, compare the means.
#
#   DATA=../shared/datasets bash experiments/bf16/run.sh msrc_v2 scene
set -euo pipefail
DATA=${DATA:-${MIML_JAX_DATA:?set DATA or MIML_JAX_DATA to the datasets folder}}
WEIGHTS=${WEIGHTS:-weights/vgg16_lpips.safetensors}
HERE=experiments/bf16
for ds in "$@"; do
  fp32=cache/${ds}_vgg16_lpips.h5 bf16=cache/${ds}_vgg16_lpips_bf16.h5
  python -m miml_jax.features --data="$ds" --data_dir="$DATA" --weights="$WEIGHTS" \
    --output="$fp32"
  python -m miml_jax.features --data="$ds" --data_dir="$DATA" --weights="$WEIGHTS" \
    --dtype=bfloat16 --output="$bf16"
  for dtype in float32 bfloat16; do
    features=$fp32; [[ $dtype == bfloat16 ]] && features=$bf16
    python -m miml_jax.experiments.table1 --features="$features" --splits=30 \
      --solvers=newton_l1,newton_l2 --output_dir="$HERE/$dtype"
  done
  python -m miml_jax.experiments.compare_tables --names=fp32,bf16 --tolerance=0.003 \
    --baseline="$HERE/float32/table1_$ds.json" --other="$HERE/bfloat16/table1_$ds.json" \
    --output="$HERE/$ds.md"
done
