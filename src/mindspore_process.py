"""What an entry point's process needs around MindSpore: its errors as one line, its graph-compile reports
out of the working directory, and an exit that skips its noisy destructors."""
import os
import re
import sys
import tempfile

_COMPILE_REPORT = re.compile(r"See file '([^']*analyze_fail\.ir)'")


def send_compile_reports_to(folder):
    """MindSpore writes a failed graph compile's report (``rank_N/om/analyze_fail.ir``) under the working
    directory unless told otherwise; send it to ``folder`` (None: the system's temp folder)."""
    os.environ.setdefault("MS_OM_PATH", folder or os.path.join(tempfile.gettempdir(), "ofakd-graph-reports"))


def runtime_error_message(err):
    """One line for a MindSpore ``RuntimeError``: the cause (e.g. "cannot read image PATH: ...") from the
    pages of text around it, plus where the compiler's report is when a graph failed to compile."""
    from src.data import pipeline_error_message

    message = pipeline_error_message(err)
    report = _COMPILE_REPORT.search(str(err))
    if report:
        message = f"graph compile failed: {message} (compiler report: {report.group(1)})"
    return message


def launched_distributed():
    """True when started by msrun / mpirun / a rank table with more than one worker."""
    for key in ("MS_WORKER_NUM", "RANK_SIZE", "OMPI_COMM_WORLD_SIZE"):
        if int(os.environ.get(key, "1") or 1) > 1:
            return True
    return False


def exit_entry_point(code):
    """Leave an entry point that may run as one of several workers: workers leave through MindSpore's exit hooks
    so the cluster sees them finish; a single process leaves quietly."""
    if launched_distributed():
        sys.exit(code)
    exit_quietly(code)


def exit_quietly(code):
    """Flush and leave without running MindSpore's cell destructors, which print spurious errors at shutdown."""
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)
