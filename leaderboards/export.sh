#!/usr/bin/env bash
# Regenerate the published leaderboard from the committed run records (nothing is retrained).
set -euo pipefail
cd "$(dirname "$0")/.."
export XRAYBENCH_RESULTS=leaderboards
xraybench leaderboard --format markdown --output leaderboards/LEADERBOARD.md
xraybench leaderboard --format markdown --threshold val --output leaderboards/LEADERBOARD-val-threshold.md
xraybench leaderboard --format json --output leaderboards/leaderboard.json
xraybench leaderboard --format json --threshold val --output leaderboards/leaderboard-val-threshold.json
echo "wrote leaderboards/LEADERBOARD.md, LEADERBOARD-val-threshold.md and their JSON twins"
