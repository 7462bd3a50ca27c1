# Environment of the recipe: the project's virtualenv (made by install.sh) and the Kaldi-style utils.
MAIN_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../../.." && pwd)
if [ -f "${MAIN_ROOT}/.venv/bin/activate" ]; then
    # shellcheck disable=SC1091
    . "${MAIN_ROOT}/.venv/bin/activate"
elif ! python -c "import espnet_ext" 2>/dev/null; then
    echo "path.sh: ${MAIN_ROOT}/.venv is missing; run ${MAIN_ROOT}/install.sh first" >&2
    exit 1
fi
export PATH="${MAIN_ROOT}/utils:${PATH}"
# this checkout's espnet_ext first, whichever checkout the virtualenv was installed from
export PYTHONPATH="${MAIN_ROOT}${PYTHONPATH:+:${PYTHONPATH}}"
export PYTHONIOENCODING=utf-8
# No OMP_NUM_THREADS here: the job runners (utils/run.pl, utils/slurm.pl) give each job its threads, and the
# recipe reads the cores this shell may use to decide them (espnet_ext.bin.recipe_info threads).
