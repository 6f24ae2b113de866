# Shared by the launch scripts (sourced, not run): the project root, the Python to use, argument checks.
ROOT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# The scripts run from ROOT_DIR (the config files' relative paths are the repository's), so relative
# paths given on the command line are made absolute from the caller's folder first (abs_path_args).
CALLER_DIR=$PWD

# The project's own environment when it has one (README's install creates .venv), else python3 on PATH.
# Set PYTHON to use another interpreter.
if [ -z "${PYTHON:-}" ]; then
  if [ -x "$ROOT_DIR/.venv/bin/python" ]; then
    PYTHON="$ROOT_DIR/.venv/bin/python"
  elif command -v python3 >/dev/null 2>&1; then
    PYTHON=python3
  else
    PYTHON=python
  fi
fi

die() { echo "error: $*" >&2; exit 2; }

# usage_or_help "$@": print $USAGE and exit 0 when asked for help (-h / --help anywhere in the arguments).
usage_or_help() {
  local arg
  for arg in "$@"; do
    case "$arg" in -h|--help) echo "$USAGE"; exit 0 ;; esac
  done
}

# usage_error MESSAGE: the message, the usage, exit 2.
usage_error() { echo "error: $*" >&2; echo "$USAGE" >&2; exit 2; }

# caller_path PATH: PATH as the caller means it (relative to the caller's folder), absolute.
caller_path() {
  case "$1" in
    /*) realpath -m "$1" ;;
    *) realpath -m "$CALLER_DIR/$1" ;;
  esac
}

check_config() {
  local cfg
  cfg=$(caller_path "$1")
  [ -f "$cfg" ] || die "CONFIG=$1 is not a file"
  echo "$cfg"
}

# Options whose value is a path: config keys (key=value, --key=value, --key value) and the tools' own flags.
PATH_OPTIONS=" output_dir data_dir teacher_ckpt teacher_cache resume config c checkpoint json file_name out work_dir "

# abs_path_args ARG...: sets ARGS to the arguments with every relative path value made absolute from the
# caller's folder (null/none/empty and resume=auto are kept as they are).
abs_path_args() {
  ARGS=()
  local arg name pending=""
  for arg in "$@"; do
    if [ -n "$pending" ]; then
      ARGS+=("$(_abs_value "$pending" "$arg")"); pending=""; continue
    fi
    case "$arg" in
      -*=*|[a-z]*=*)
        name=${arg%%=*}; name=${name#-}; name=${name#-}; name=${name//-/_}
        if [[ "$PATH_OPTIONS" == *" $name "* ]]; then
          ARGS+=("${arg%%=*}=$(_abs_value "$name" "${arg#*=}")"); continue
        fi ;;
      -*)
        name=${arg#-}; name=${name#-}; name=${name//-/_}
        [[ "$PATH_OPTIONS" == *" $name "* ]] && pending=$name ;;
    esac
    ARGS+=("$arg")
  done
}

_abs_value() {
  local name=$1 val=$2
  case "${val,,}" in
    ""|null|none|"~") echo "$val"; return ;;
  esac
  if [ "$name" = resume ] && [ "$val" = auto ]; then echo "$val"; return; fi
  caller_path "$val"
}

# Check every path-valued key=value override that names a location we can verify now (after abs_path_args).
check_overrides() {
  local arg val
  for arg in "$@"; do
    case "${arg#*=}" in ""|null|none|Null|None|NULL|"~") continue ;; esac
    case "$arg" in
      data_dir=*|--data_dir=*|--data-dir=*)
        val=$(caller_path "${arg#*=}"); [ -d "$val" ] || die "DATASET_PATH=${arg#*=} is not a directory" ;;
      teacher_ckpt=*|--teacher_ckpt=*|--teacher-ckpt=*)
        val=$(caller_path "${arg#*=}"); [ -f "$val" ] || die "teacher_ckpt=${arg#*=} is not a file" ;;
      resume=auto|--resume=auto) ;;
      resume=*|--resume=*)
        val=$(caller_path "${arg#*=}"); [ -f "$val" ] || die "resume=${arg#*=} is not a file" ;;
    esac
  done
}
