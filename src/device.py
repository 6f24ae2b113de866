"""Which backend a run uses: ``device_target: auto`` is the first of Ascend, GPU, CPU that the installed
MindSpore can run on; an explicit backend it cannot run on is refused with one line.

MindSpore loads its backend plugins when it is imported (Ascend needs the CANN libraries, GPU the CUDA
ones) and remembers which loaded; ``mindspore.device_context.<backend>.is_available()`` reads that record,
so asking costs nothing and never starts a device. The check says what this MindSpore build and its
libraries support, not how many devices are free.
"""
import mindspore as ms

AUTO_ORDER = ("Ascend", "GPU", "CPU")


def usable_backends():
    """The backends the installed MindSpore can use, in ``AUTO_ORDER`` (CPU is always there)."""
    usable = []
    for name in AUTO_ORDER:
        module = getattr(getattr(ms, "device_context", None), name.lower(), None)
        available = module.is_available() if module is not None else ms.hal.is_available(name)
        if available:
            usable.append(name)
    return usable


def resolve_device_target(requested):
    """``requested`` (auto, CPU, GPU or Ascend) as the backend to run on; ValueError when it cannot be used."""
    usable = usable_backends()
    if str(requested).lower() == "auto":
        return usable[0]
    if requested not in usable:
        raise ValueError(f"device_target={requested}: the installed MindSpore {ms.__version__} can use "
                         f"{' and '.join(usable)} only (device_target=auto picks the first of "
                         f"{', '.join(AUTO_ORDER)} it can use)")
    return requested
