#!/usr/bin/env bash
# Start the one-node Slurm cluster of tests/slurm/slurm.conf on this machine (as root; Debian's
# slurm-wlm and munge installed), and wait until it runs a job. Stop it with tests/slurm/stop.sh.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
install -d -o munge -g munge -m 0755 /run/munge
[ -s /etc/munge/munge.key ] || { dd if=/dev/urandom bs=1 count=1024 of=/etc/munge/munge.key 2>/dev/null; chown munge:munge /etc/munge/munge.key; chmod 400 /etc/munge/munge.key; }
pgrep -x munged >/dev/null || su -s /bin/sh munge -c /usr/sbin/munged
install -d /etc/slurm /var/spool/slurmctld /var/spool/slurmd /var/log/slurm
cp "${here}/slurm.conf" /etc/slurm/slurm.conf
pgrep -x slurmctld >/dev/null || slurmctld
pgrep -x slurmd >/dev/null || slurmd -N localhost
for _ in $(seq 60); do  # the node registers within seconds
    if srun --quiet --time 1 true 2>/dev/null; then echo "tests/slurm/start.sh: Slurm is up ($(sinfo -h -o '%P %D %c CPUs %m MB'))"; exit 0; fi
    sleep 1
done
echo "tests/slurm/start.sh: Slurm did not run a job within 60 s; see /var/log/slurm/slurmctld.log and slurmd.log" >&2
exit 1
