#!/bin/bash
# The runs behind experiments/table1_recipe/README.md, on feature files made with
#   python -m miml_jax.features --dataset=D --data_dir=../shared/datasets [--augment=flip] \
#       [--scales=224,320] --output=cache/D_vgg16_lpips[_224-320][_flip].h5
# Usage: bash experiments/table1_recipe/run.sh DATASET STEP...
#   (steps: main ablation cv_c scales seed1; SPLITS=10 for the first 10 splits only)
set -euo pipefail
d=$1; shift
out=experiments/table1_recipe
t1() { python -m miml_jax.experiments.table1 --overwrite --splits="${SPLITS:-30}" "$@"; }
for step in "$@"; do
  case $step in
    main)      # the recipe on flip features, beside the paper's two methods on the same features
      t1 --features=cache/${d}_vgg16_lpips_flip.h5 --solvers=newton_l1,newton_l2,recipe \
         --recipe_steps=calibrate,mix --output_dir=$out ;;
    ablation)  # what each part adds, on the same 30 splits
      t1 --features=cache/${d}_vgg16_lpips.h5 --solvers=newton_l1,recipe \
         --recipe_steps=calibrate,mix --output_dir=$out/ablation/no_flip
      t1 --features=cache/${d}_vgg16_lpips_flip.h5 --solvers=recipe --recipe_steps=calibrate \
         --output_dir=$out/ablation/flip_calibrate ;;
    cv_c)      # C chosen per label as well
      t1 --features=cache/${d}_vgg16_lpips_flip.h5 --solvers=recipe \
         --recipe_steps=cv_c,calibrate,mix --recipe_Cs=0.03,0.1,0.3,1,3 \
         --output_dir=$out/ablation/flip_cv_c ;;
    scales)    # two input sizes
      t1 --features=cache/${d}_vgg16_lpips_224-320_flip.h5 --solvers=newton_l1,recipe \
         --recipe_steps=calibrate,mix --output_dir=$out/ablation/scales_flip ;;
    seed1)     # a second set of 30 splits
      t1 --features=cache/${d}_vgg16_lpips_flip.h5 --solvers=newton_l1,newton_l2,recipe \
         --recipe_steps=calibrate,mix --seed=1 --output_dir=$out/seed1 ;;
    *) echo "unknown step $step" >&2; exit 2 ;;
  esac
done
