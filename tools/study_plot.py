"""Charts of the Fashion-MNIST study and the eps sweep, drawn with matplotlib (Agg backend, PNG files).

``draw_panels``: test top-1 against epoch, one panel per pair, one line (with a min..max band) per method.
``draw_sweep``: final top-1 against a hyper-parameter, one line per setting, baselines as horizontal bands.
"""
import math

import matplotlib

matplotlib.use("Agg")  # files only: no display, no GUI toolkit
import matplotlib.pyplot as plt  # after the backend is chosen
from matplotlib.ticker import MaxNLocator

DPI = 100
# method -> line colour (colour-blind safe Okabe-Ito hues); unknown methods cycle through EXTRA
COLOURS = {"none": "#5a5a5a", "scratch": "#5a5a5a", "alone": "#5a5a5a", "kd": "#0072b2", "ofa": "#d55e00",
           "student alone": "#5a5a5a", "student + kd": "#0072b2", "student + ofa-kd": "#d55e00",
           "teacher alone": "#000000"}
EXTRA = ["#009e73", "#cc79a7", "#e69f00", "#56b4e9", "#f0e442", "#000000"]


def method_colours(methods):
    """A fixed colour per known method name (case-insensitive), the others from EXTRA in order."""
    colours, extra = {}, iter(EXTRA * 4)
    for method in methods:
        colours[method] = COLOURS.get(str(method).lower()) or next(extra)
    return colours


def _save(fig, path):
    fig.savefig(path, format="png", dpi=DPI)
    plt.close(fig)
    return path


def draw_panels(panels, path, title=None, y_label="test top-1 (%)", x_label="epoch", panel_size=(420, 320)):
    """Write a PNG with one chart per panel, ``panel_size`` pixels each.

    ``panels``: list of ``{"title": str, "series": {method: {"mean": [...], "low": [...], "high": [...]}}}``,
    values per epoch (epoch 1 first). ``low``/``high`` (optional) draw a light band, e.g. min..max over seeds.
    A series ``{"reference": value}`` (a model evaluated once, e.g. the teacher) is a dashed horizontal line.
    """
    if not panels:
        raise ValueError("draw_panels needs at least one panel")
    methods = list(dict.fromkeys(m for panel in panels for m in panel["series"]))
    colours = method_colours(methods)
    width, height = panel_size
    # legend entries side by side as far as they fit the figure's width (about 7 px a character at size 9)
    columns = max(1, min(len(methods), width * len(panels) // (45 + 7 * max(len(str(m)) for m in methods))))
    rows = math.ceil(len(methods) / columns)
    legend = 36 + 24 * rows
    extra = legend + (34 if title else 0)  # legend rows (and title) below / above the panels
    fig, axes = plt.subplots(1, len(panels), squeeze=False,
                             figsize=(width * len(panels) / DPI, (height + extra) / DPI), dpi=DPI)
    for k, (ax, panel) in enumerate(zip(axes[0], panels)):
        for method, s in panel["series"].items():
            if "reference" in s:
                ax.axhline(s["reference"], color=colours[method], linestyle="--", linewidth=1.8, label=method)
                continue
            epochs = list(range(1, len(s["mean"]) + 1))
            if s.get("low") and s.get("high") and len(s["low"]) > 1:
                ax.fill_between(epochs, s["low"], s["high"], color=colours[method], alpha=0.2, linewidth=0)
            ax.plot(epochs, s["mean"], color=colours[method], linewidth=2.5, marker="o", markersize=4,
                    label=method)
        ax.set_title(panel["title"], fontsize=10)
        ax.set_xlabel(x_label, fontsize=9)
        if k == 0:
            ax.set_ylabel(y_label, fontsize=9)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(True, color="#e1e1e1")
        ax.tick_params(labelsize=8)
    references = {m for panel in panels for m, s in panel["series"].items() if "reference" in s}
    handles = [plt.Line2D([], [], color=colours[m], linewidth=1.8 if m in references else 2.5,
                          linestyle="--" if m in references else "-") for m in methods]
    fig.legend(handles, methods, loc="lower center", ncol=columns, frameon=False, fontsize=9)
    if title:
        fig.suptitle(title, fontsize=11)
    fig.tight_layout(rect=(0, (legend - 20) / (height + extra), 1, 1))
    return _save(fig, path)


def draw_sweep(lines, bands, path, title=None, x_label="eps", y_label="test top-1 (%)", size=(640, 420)):
    """Write a PNG: final top-1 against a swept value.

    ``lines``: ``{label: {"x": [...], "mean": [...], "low": [...], "high": [...]}}`` drawn as lines with
    low..high error bars (e.g. min..max over seeds); ``bands``: ``{label: {"mean": m, "low": l, "high": h}}``
    drawn as horizontal lines across the chart with a shaded low..high band (baselines without the value).
    """
    if not lines and not bands:
        raise ValueError("draw_sweep needs at least one line or band")
    colours = method_colours(list(bands) + list(lines))
    fig, ax = plt.subplots(figsize=(size[0] / DPI, size[1] / DPI), dpi=DPI)
    for label, b in bands.items():
        ax.axhspan(b["low"], b["high"], color=colours[label], alpha=0.15, linewidth=0)
        ax.axhline(b["mean"], color=colours[label], linestyle="--", linewidth=1.8, label=label)
    for label, s in lines.items():
        low = [m - lo for m, lo in zip(s["mean"], s.get("low") or s["mean"])]
        high = [hi - m for m, hi in zip(s["mean"], s.get("high") or s["mean"])]
        ax.errorbar(s["x"], s["mean"], yerr=[low, high], color=colours[label], linewidth=2.2, marker="o",
                    markersize=5, capsize=4, label=label)
    ax.set_xlabel(x_label)
    ax.set_ylabel(y_label)
    ax.grid(True, color="#e1e1e1")
    ax.legend(fontsize=9, loc="best")
    if title:
        ax.set_title(title, fontsize=10)
    fig.tight_layout()
    return _save(fig, path)
