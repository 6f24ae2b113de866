"""Table-driven renaming of PyTorch state-dict names onto our MindSpore parameter names.

A ``Layout`` describes one source layout (timm, an authors' release, ...) of one architecture: an ordered
list of regex renames of whole names, the buffers it saves that we rebuild and so drop, and our classifier
parameters. MindSpore-specific leaf names of normalisation layers (LayerNorm / BatchNorm ``gamma``,
``beta``, ``moving_mean``, ``moving_variance``) are not listed per family: ``mindspore_leaf`` applies them
wherever the target model has such a parameter in place of the torch one.
"""
import re
from dataclasses import dataclass

# Buffers that PyTorch BatchNorm saves and MindSpore does not have: dropped for every family.
COMMON_SKIPS = (r"(^|\.)num_batches_tracked$",)

# torch leaf name -> MindSpore leaf name inside normalisation layers.
NORM_LEAVES = {
    "weight": "gamma",
    "bias": "beta",
    "running_mean": "moving_mean",
    "running_var": "moving_variance",
}


@dataclass(frozen=True)
class Layout:
    """One checkpoint layout of one architecture and how its names become ours.

    ``renames``: ``(pattern, replacement)`` pairs applied in order with ``re.sub`` (replacement may be a
    function of the match); ``skips``: patterns of source tensors that are known buffers, dropped on purpose;
    ``head``: our classifier parameters; ``marker``: a source name whose presence selects this layout
    (``None`` for the default layout); ``reshape``: patterns of our names that may take a tensor of another
    shape with the same number of elements (e.g. a ``[dim]`` affine into a ``[1, 1, dim]`` parameter).
    """

    source: str
    head: tuple
    renames: tuple = ()
    skips: tuple = ()
    marker: str = None
    reshape: tuple = ()

    def skipped(self, name):
        """True for a known buffer of this layout that our model rebuilds or does not need."""
        return any(re.search(p, name) for p in COMMON_SKIPS + tuple(self.skips))

    def target(self, name):
        """Our parameter name for source ``name`` (norm leaves still in torch spelling)."""
        for pattern, replacement in self.renames:
            name = re.sub(pattern, replacement, name)
        return name

    def may_reshape(self, our_name):
        return any(re.search(p, our_name) for p in self.reshape)


def mindspore_leaf(name, expected):
    """``name`` with its torch norm leaf (weight/bias/running_*) renamed where ``expected`` has the MindSpore one."""
    if name in expected:
        return name
    path, _, leaf = name.rpartition(".")
    renamed = f"{path}.{NORM_LEAVES[leaf]}" if leaf in NORM_LEAVES else name
    return renamed if renamed in expected else name


def pick_layout(layouts, names):
    """The layout whose marker is among ``names``, else the default (marker-less) one."""
    names = set(names)
    for layout in layouts:
        if layout.marker is not None and layout.marker in names:
            return layout
    return next(layout for layout in layouts if layout.marker is None)

