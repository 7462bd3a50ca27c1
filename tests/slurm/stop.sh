#!/usr/bin/env bash
# Stop the one-node Slurm cluster that tests/slurm/start.sh started.
pkill -x slurmd; pkill -x slurmctld; pkill -x munged
exit 0
