# utils/parse_options.sh: Kaldi-style command-line options for recipe scripts.
#
# Source it after setting the defaults, one `name=value` a line at the start of a line:
#
#     stage=1
#     use_lora=true
#     help_message="Usage: $0 [options] <data-dir>"
#     . utils/parse_options.sh
#
# Then `--stage 3` and `--stage=3` set stage; dashes in option names stand for underscores
# (`--use-lora false` sets use_lora); a variable whose default is true or false only takes true or
# false; parsing stops at the first argument not starting with `--` (or after a bare `--`) and leaves
# the rest in "$@". `--help` / `-h` prints help_message and every option with its description and
# default, and exits 0.
#
# The options are the variables the calling script assigns before the line that sources this file,
# found by reading that script: so only what a script declares can be set from the command line (a
# typo is an error, not a silently set new variable), and --help can list them without the script
# keeping a second list. Lines that look like assignments but set nothing (inside a here-document)
# are skipped because only variables that are actually set count.
#
# Errors (unknown option, missing value, non-boolean for a boolean) name the option and exit 1.
# Everything here runs in the caller's shell, so helper variables start with _po_ and are unset after.

_po_script=${BASH_SOURCE[1]:-}
if [ -z "$_po_script" ] || [ ! -r "$_po_script" ]; then
    echo "parse_options.sh: source me from a script file (I read its defaults), not from '${_po_script:-an interactive shell}'" >&2
    return 1 2>/dev/null || exit 1
fi

# Names assigned at column 0 before the `. utils/parse_options.sh` line, each once, in order; the comment
# on an option's line (and on the indented comment lines right below it) is its description for --help.
_po_names=()
declare -A _po_default=() _po_about=()
_po_lineno=0
_po_last=
while IFS= read -r _po_line || [ -n "$_po_line" ]; do
    _po_lineno=$((_po_lineno + 1))
    if [ "$_po_lineno" -ge "${BASH_LINENO[0]}" ]; then
        break
    fi
    if [[ $_po_line =~ ^([A-Za-z_][A-Za-z0-9_]*)= ]]; then
        _po_name=${BASH_REMATCH[1]}
        _po_last=
        if [ "$_po_name" != help_message ] && [[ -v $_po_name ]] && [[ ! -v _po_default[$_po_name] ]]; then
            _po_names+=("$_po_name")
            _po_default[$_po_name]=${!_po_name}
            _po_about[$_po_name]=
            [[ $_po_line =~ ^[^#]*#[[:space:]]*(.*)$ ]] && _po_about[$_po_name]=${BASH_REMATCH[1]}
            _po_last=$_po_name
        fi
    elif [ -n "$_po_last" ] && [[ $_po_line =~ ^[[:space:]]+#[[:space:]]*(.*)$ ]]; then
        _po_about[$_po_last]+=" ${BASH_REMATCH[1]}"
    else
        _po_last=
    fi
done < "$_po_script"

_po_help() {
    if [ -n "${help_message:-}" ]; then
        printf '%s\n\n' "$help_message"
    fi
    echo "Options (dashes and underscores in names are interchangeable):"
    local name value
    for name in "${_po_names[@]}"; do
        value=${_po_default[$name]}
        printf '  --%-24s %s (default: %s)\n' "$name" "${_po_about[$name]}" "${value:-\"\"}"
    done
}

while [ $# -gt 0 ]; do
    case $1 in
        --help | -h)
            _po_help
            exit 0
            ;;
        --)
            shift
            break
            ;;
        --*=*)
            _po_opt=${1%%=*}
            _po_value=${1#*=}
            shift
            ;;
        --*)
            _po_opt=$1
            if [ $# -lt 2 ]; then
                echo "$0: option $_po_opt needs a value (e.g. $_po_opt VALUE or $_po_opt=VALUE)" >&2
                exit 1
            fi
            _po_value=$2
            shift 2
            ;;
        *)
            break
            ;;
    esac
    _po_name=${_po_opt#--}
    _po_name=${_po_name//-/_}
    if [[ ! -v _po_default[$_po_name] ]]; then
        echo "$0: unknown option $_po_opt; '$0 --help' lists the options" >&2
        exit 1
    fi
    case ${_po_default[$_po_name]} in
        true | false)
            if [ "$_po_value" != true ] && [ "$_po_value" != false ]; then
                echo "$0: option $_po_opt takes true or false, not '$_po_value'" >&2
                exit 1
            fi
            ;;
    esac
    printf -v "$_po_name" '%s' "$_po_value"
done

unset -f _po_help
unset _po_script _po_names _po_default _po_about _po_last _po_lineno _po_line _po_name _po_opt _po_value
true # the status of sourcing this file is 0, which callers under `set -e` rely on
