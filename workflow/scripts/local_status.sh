#!/usr/bin/env bash
# cluster-generic status command: running / success / failed for a local "job id" (PID).
pid="$1"
state=.snakemake/local-cluster
if [ -f "$state/$pid.rc" ]; then
  if [ "$(cat "$state/$pid.rc")" = "0" ]; then echo success; else echo failed; fi
elif kill -0 "$pid" 2>/dev/null; then
  echo running
else
  sleep 1
  if [ -f "$state/$pid.rc" ] && [ "$(cat "$state/$pid.rc")" = "0" ]; then echo success; else echo failed; fi
fi
