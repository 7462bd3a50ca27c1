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
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}  # torch threads are set per job by the recipe
