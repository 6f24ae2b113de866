# Shared argument checks for the launch scripts (sourced, not run).
ROOT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
PYTHON=${PYTHON:-python}

die() { echo "error: $*" >&2; exit 1; }

check_config() {
  local cfg
  cfg=$(realpath -m "$1")
  [ -f "$cfg" ] || die "CONFIG=$1 is not a file"
  echo "$cfg"
}

# Check every path-valued key=value override that names a location we can verify now.
check_overrides() {
  local arg key val
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
