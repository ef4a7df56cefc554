#!/usr/bin/env bash
# cluster-generic submit command: run the job script as a detached local process.
# Prints a job id (the PID) as a real scheduler would; status lives in .snakemake/local-cluster/.
set -euo pipefail
jobscript="$1"
state=.snakemake/local-cluster
mkdir -p "$state"
log="${DENOISE_SUBMIT_LOG:-$state/submissions.log}"
(
  bash "$jobscript" >"$state/$$.$RANDOM.out" 2>&1
  echo $? >"$state/$BASHPID.rc"
) &
pid=$!
echo "$pid $(basename "$jobscript")" >>"$log"
echo "$pid"
