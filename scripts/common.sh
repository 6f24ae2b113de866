# Shared by the launch scripts (sourced, not run): the project root, the Python to use, argument checks.
ROOT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)

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

check_config() {
  local cfg
  cfg=$(realpath -m "$1")
  [ -f "$cfg" ] || die "CONFIG=$1 is not a file"
  echo "$cfg"
}

# Check every path-valued key=value override that names a location we can verify now.
check_overrides() {
  local arg val
  for arg in "$@"; do
    case "$arg" in
      data_dir=*|--data_dir=*)
        val=$(realpath -m "${arg#*=}"); [ -d "$val" ] || die "DATASET_PATH=${arg#*=} is not a directory" ;;
      teacher_ckpt=*|--teacher_ckpt=*)
        val=$(realpath -m "${arg#*=}"); [ -f "$val" ] || die "teacher_ckpt=${arg#*=} is not a file" ;;
      resume=auto|--resume=auto) ;;
      resume=*|--resume=*)
        val=$(realpath -m "${arg#*=}"); [ -f "$val" ] || die "resume=${arg#*=} is not a file" ;;
    esac
  done
}
