# Which job dispatcher the recipe uses (Kaldi convention): run.pl runs jobs on this machine,
# slurm.pl submits them to a Slurm cluster (its sbatch options: conf/slurm.conf). Choose with
# ./run.sh --cmd slurm.pl (or run.pl), or export cmd_backend=slurm, or edit below.
#   train_cmd: CPU jobs (data prep, training with --ngpu 0, scoring, analysis)
#   decode_cmd: decoding jobs on CPU
#   cuda_cmd: any job with --ngpu N > 0 (the recipe adds --gpu N)
# Each job also gets --num-threads (its CPUs: sbatch --cpus-per-task); inside the job that number
# becomes OMP_NUM_THREADS, torch's thread count.
cmd_backend=${cmd_backend:-local}

case "${cmd_backend}" in
    local)
        export train_cmd="run.pl"
        export decode_cmd="run.pl"
        export cuda_cmd="run.pl"
        ;;
    slurm)
        if ! command -v sbatch >/dev/null 2>&1; then
            echo "cmd.sh: cmd_backend=slurm but sbatch is not on PATH: Slurm is not installed here; use cmd_backend=local" >&2
            exit 1
        fi
        export train_cmd="slurm.pl --mem 16G"
        export decode_cmd="slurm.pl --mem 8G"
        export cuda_cmd="slurm.pl --mem 32G"
        ;;
    *)
        echo "cmd.sh: unknown cmd_backend=${cmd_backend} (local|slurm)" >&2
        exit 1
        ;;
esac
