#!/usr/bin/env bash
# N workers of one study as a Slurm job array: every array task runs the same `harness search` and pulls trials
# from the shared PostgreSQL study until it has --trials finished ones.
#   sbatch deploy/slurm-array.sh            (HARNESS_DB_PASSWORD in the submitting environment)
#   squeue --me; tail -f harness-legal-*.out
#SBATCH --job-name=harness-legal
#SBATCH --array=0-7
#SBATCH --gres=gpu:1
#SBATCH --cpus-per-task=8
#SBATCH --time=24:00:00
#SBATCH --requeue
#SBATCH --output=harness-legal-%A_%a.out
set -euo pipefail
# SLURM_ARRAY_TASK_ID seeds each worker's sampler; a preempted or killed task's trial is failed by heartbeat and
# retried by the others (or by this task when it is requeued).
export HARNESS_STORAGE="postgresql://harness:${HARNESS_DB_PASSWORD}@db-host:5432/optuna"
export HARNESS_TRACKING_URI="http://mlflow-host:5000"
exec .venv/bin/harness search legal --trials 30 --profile gpu --quiet
