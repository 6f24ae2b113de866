"""Line charts drawn with Pillow: one panel per pair, test accuracy against epoch per method.

matplotlib is not a dependency of this project; Pillow (already needed by the data pipeline) is enough
for axes, ticks, lines, a min..max band and a legend.
"""
import math

from PIL import Image, ImageDraw, ImageFont

WHITE = (255, 255, 255)
BLACK = (0, 0, 0)
GRID = (225, 225, 225)
# method -> line colour (colour-blind safe Okabe-Ito hues); unknown methods cycle through EXTRA
COLOURS = {"none": (90, 90, 90), "scratch": (90, 90, 90), "kd": (0, 114, 178), "ofa": (213, 94, 0)}
EXTRA = [(0, 158, 115), (204, 121, 167), (230, 159, 0), (86, 180, 233), (240, 228, 66)]


def _font(size):
    try:
        return ImageFont.load_default(size=size)  # a scalable font on Pillow >= 10.1
    except TypeError:
        return ImageFont.load_default()


def _text_size(draw, text, font):
    left, top, right, bottom = draw.textbbox((0, 0), text, font=font)
    return right - left, bottom - top


def nice_ticks(low, high, count=5):
    """Round tick values covering [low, high] (steps of 1, 2 or 5 times a power of ten)."""
    if not (math.isfinite(low) and math.isfinite(high)):
        raise ValueError(f"tick range must be finite, got {low}..{high}")
    if high <= low:
        high = low + 1.0
    raw = (high - low) / max(count, 1)
    power = 10 ** math.floor(math.log10(raw))
    step = next(m * power for m in (1, 2, 5, 10) if m * power >= raw)
    start = math.floor(low / step) * step
    ticks = []
    value = start
    while value <= high + 1e-9 * step:
        ticks.append(round(value, 10))
        value += step
    if ticks[-1] < high:
        ticks.append(round(value, 10))
    return ticks


def method_colours(methods):
    colours, extra = {}, iter(EXTRA * 4)
    for method in methods:
        colours[method] = COLOURS.get(str(method).lower()) or next(extra)
    return colours


def draw_panels(panels, path, title=None, y_label="test top-1 (%)", x_label="epoch", panel_size=(420, 320)):
    """Write a PNG with one chart per panel.

    ``panels``: list of ``{"title": str, "series": {method: {"mean": [...], "low": [...], "high": [...]}}}``,
    values per epoch (epoch 1 first). ``low``/``high`` (optional) draw a light band, e.g. min..max over seeds.
    """
    if not panels:
        raise ValueError("draw_panels needs at least one panel")
    methods = []
    for panel in panels:
        for method in panel["series"]:
            if method not in methods:
                methods.append(method)
    colours = method_colours(methods)
    width, height = panel_size
    header = 34 if title else 6
    legend_h = 34
    image = Image.new("RGB", (width * len(panels), header + height + legend_h), WHITE)
    draw = ImageDraw.Draw(image)
    font, small, big = _font(13), _font(11), _font(16)
    if title:
        tw, _ = _text_size(draw, title, big)
        draw.text(((image.width - tw) // 2, 8), title, fill=BLACK, font=big)
    for k, panel in enumerate(panels):
        _draw_panel(draw, panel, (k * width, header, width, height), colours, font, small, x_label,
                    y_label if k == 0 else None)
    # legend, centred under the panels
    entries = [(m, colours[m]) for m in methods]
    widths = [30 + _text_size(draw, m, font)[0] + 24 for m, _ in entries]
    x = (image.width - sum(widths)) // 2
    y = header + height + legend_h // 2
    for (method, colour), w in zip(entries, widths):
        draw.line([(x, y), (x + 24, y)], fill=colour, width=3)
        draw.text((x + 30, y - 8), method, fill=BLACK, font=font)
        x += w
    image.save(path, format="PNG")
    return path


def _draw_panel(draw, panel, box, colours, font, small, x_label, y_label):
    x0, y0, width, height = box
    left, right, top, bottom = x0 + 58, x0 + width - 14, y0 + 26, y0 + height - 40
    series = panel["series"]
    values = [v for s in series.values() for key in ("mean", "low", "high") for v in s.get(key) or []]
    epochs = max((len(s["mean"]) for s in series.values()), default=1)
    if not values:
        values = [0.0, 1.0]
    y_ticks = nice_ticks(min(values), max(values))
    y_min, y_max = y_ticks[0], y_ticks[-1]
    x_ticks = list(range(1, epochs + 1)) if epochs <= 12 else nice_ticks(1, epochs)

    def px(epoch):
        return left + (right - left) * ((epoch - 1) / max(epochs - 1, 1))

    def py(value):
        return bottom - (bottom - top) * ((value - y_min) / max(y_max - y_min, 1e-12))

    tw, _ = _text_size(draw, panel["title"], font)
    draw.text((x0 + (width - tw) // 2, y0 + 4), panel["title"], fill=BLACK, font=font)
    for tick in y_ticks:
        y = py(tick)
        draw.line([(left, y), (right, y)], fill=GRID)
        label = f"{tick:g}"
        lw, lh = _text_size(draw, label, small)
        draw.text((left - 6 - lw, y - lh / 2 - 2), label, fill=BLACK, font=small)
    for tick in x_ticks:
        x = px(tick)
        draw.line([(x, bottom), (x, bottom + 4)], fill=BLACK)
        label = f"{tick:g}"
        lw, _ = _text_size(draw, label, small)
        draw.text((x - lw / 2, bottom + 6), label, fill=BLACK, font=small)
    draw.rectangle([left, top, right, bottom], outline=BLACK)
    lw, _ = _text_size(draw, x_label, small)
    draw.text(((left + right - lw) / 2, bottom + 22), x_label, fill=BLACK, font=small)
    if y_label:
        draw.text((x0 + 4, top - 20), y_label, fill=BLACK, font=small)
    for method, s in series.items():
        colour = colours[method]
        low, high = s.get("low"), s.get("high")
        if low and high and len(low) > 1:
            band = [(px(i + 1), py(v)) for i, v in enumerate(high)] + \
                   [(px(i + 1), py(v)) for i, v in reversed(list(enumerate(low)))]
            light = tuple(int(c + (255 - c) * 0.8) for c in colour)
            draw.polygon(band, fill=light)
    for method, s in series.items():  # lines over every band, so no band hides a line
        points = [(px(i + 1), py(v)) for i, v in enumerate(s["mean"])]
        if len(points) > 1:
            draw.line(points, fill=colours[method], width=3, joint="curve")
        for x, y in points:
            draw.ellipse([x - 3, y - 3, x + 3, y + 3], fill=colours[method])
