# Which job dispatcher the recipe uses (Kaldi convention): run.pl runs jobs on this machine,
# slurm.pl submits them to a Slurm cluster. Choose with: export cmd_backend=slurm (or edit below).
cmd_backend=${cmd_backend:-local}

case "${cmd_backend}" in
    local)
        export train_cmd="run.pl"
        export decode_cmd="run.pl"
        ;;
    slurm)
        if ! command -v sbatch >/dev/null 2>&1; then
            echo "cmd.sh: cmd_backend=slurm but sbatch is not on PATH: Slurm is not installed here; use cmd_backend=local" >&2
            exit 1
        fi
        export train_cmd="slurm.pl --mem 16G"
        export decode_cmd="slurm.pl --mem 8G"
        ;;
    *)
        echo "cmd.sh: unknown cmd_backend=${cmd_backend} (local|slurm)" >&2
        exit 1
        ;;
esac
