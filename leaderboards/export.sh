#!/usr/bin/env bash
# Regenerate the published leaderboard from the committed run records (nothing is retrained).
set -euo pipefail
cd "$(dirname "$0")/.."
export XRAYBENCH_RESULTS=leaderboards
# --force: these published files are this script's own (older ones were written before files carried
# xraybench's generator marker)
xraybench leaderboard --force --format markdown --output leaderboards/LEADERBOARD.md
xraybench leaderboard --force --format markdown --threshold val --output leaderboards/LEADERBOARD-val-threshold.md
xraybench leaderboard --force --format json --output leaderboards/leaderboard.json
xraybench leaderboard --force --format json --threshold val --output leaderboards/leaderboard-val-threshold.json
if [ -d leaderboards/precision/runs ]; then
  # float32 against mixed_bfloat16 (issue 8): its own results folder, so it never joins the main rows
  XRAYBENCH_RESULTS=leaderboards/precision xraybench leaderboard --force --format markdown --no-published \
    --output leaderboards/precision/PRECISION.md
  XRAYBENCH_RESULTS=leaderboards/precision xraybench leaderboard --force --format json --no-published \
    --output leaderboards/precision/precision.json
fi
if [ -d leaderboards/resolution/runs ]; then
  # the resolution study (issue 14): its own results folder too; its summary table in RESOLUTION.md
  XRAYBENCH_RESULTS=leaderboards/resolution xraybench leaderboard --force --format markdown --no-published \
    --output leaderboards/resolution/LEADERBOARD.md
  XRAYBENCH_RESULTS=leaderboards/resolution xraybench leaderboard --force --format json --no-published \
    --output leaderboards/resolution/leaderboard.json
  python benchmarks/resolution_study.py table --results leaderboards/resolution --also leaderboards \
    --also-sizes 150 > leaderboards/resolution/table.md
fi
if [ -d leaderboards/recipes/runs ]; then
  # the recipe study (issue 21): its own results folder; the ablation table and the selection rule's pick
  XRAYBENCH_RESULTS=leaderboards/recipes xraybench leaderboard --force --format markdown --threshold val \
    --output leaderboards/recipes/LEADERBOARD-val-threshold.md
  XRAYBENCH_RESULTS=leaderboards/recipes xraybench leaderboard --force --format json --threshold val \
    --output leaderboards/recipes/leaderboard-val-threshold.json
  python benchmarks/recipe_study.py table --results leaderboards/recipes > leaderboards/recipes/table.md
  python benchmarks/recipe_study.py select --results leaderboards/recipes > leaderboards/recipes/selection.txt
fi
if [ -d leaderboards/recipes-28px/runs ]; then
  # the recipe study's pick on the built-in 28 px copy, beside the seed recipe (PneumoniaMNIST's size)
  XRAYBENCH_RESULTS=leaderboards/recipes-28px xraybench leaderboard --force --format markdown --threshold val \
    --output leaderboards/recipes-28px/LEADERBOARD-val-threshold.md
fi
echo "wrote leaderboards/LEADERBOARD.md, LEADERBOARD-val-threshold.md and their JSON twins"
