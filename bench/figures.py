"""SVG figures drawn by hand (no plotting library): grouped bars and a line."""

from html import escape

WIDTH, HEIGHT = 640, 320
LEFT, RIGHT, TOP, BOTTOM = 70, 20, 40, 60
COLOURS = ["#8c8c8c", "#1f77b4", "#ff7f0e", "#2ca02c", "#9467bd", "#8c564b"]


def _frame(title, unit, top_value):
    plot_h = HEIGHT - TOP - BOTTOM
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" '
        f'font-family="sans-serif" font-size="12">',
        f'<rect width="{WIDTH}" height="{HEIGHT}" fill="white"/>',
        f'<text x="{WIDTH / 2}" y="22" text-anchor="middle" font-size="15">{escape(title)}</text>',
        f'<text x="14" y="{TOP + plot_h / 2}" transform="rotate(-90 14 {TOP + plot_h / 2})" '
        f'text-anchor="middle">{escape(unit)}</text>',
    ]
    for step in range(5):
        value = top_value * step / 4
        y = TOP + plot_h - plot_h * step / 4
        parts.append(
            f'<line x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{y:.1f}" y2="{y:.1f}" stroke="#ddd"/>'
            f'<text x="{LEFT - 6}" y="{y + 4:.1f}" text-anchor="end">{value:.4g}</text>'
        )
    return parts


def _nice_top(value):
    if value <= 0:
        return 1.0
    magnitude = 10 ** (len(str(int(value))) - 1)
    for factor in (1, 1.5, 2, 2.5, 3, 4, 5, 6, 8, 10):
        if factor * magnitude >= value:
            return factor * magnitude
    return value


def bars(title, unit, groups, series):
    """``groups``: x labels; ``series``: {name: [value per group]}; returns SVG text."""
    top = _nice_top(max((v for values in series.values() for v in values), default=1) * 1.1)
    parts = _frame(title, unit, top)
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
    group_w = plot_w / max(1, len(groups))
    bar_w = group_w * 0.7 / max(1, len(series))
    for g, label in enumerate(groups):
        x0 = LEFT + g * group_w + group_w * 0.15
        for s, (_name, values) in enumerate(series.items()):
            value = values[g]
            h = plot_h * value / top
            x = x0 + s * bar_w
            parts.append(
                f'<rect x="{x:.1f}" y="{TOP + plot_h - h:.1f}" width="{bar_w - 2:.1f}" '
                f'height="{h:.1f}" fill="{COLOURS[s % len(COLOURS)]}"/>'
                f'<text x="{x + bar_w / 2:.1f}" y="{TOP + plot_h - h - 4:.1f}" '
                f'text-anchor="middle" font-size="11">{value:.4g}</text>'
            )
        parts.append(
            f'<text x="{LEFT + g * group_w + group_w / 2:.1f}" y="{HEIGHT - BOTTOM + 18}" '
            f'text-anchor="middle">{escape(label)}</text>'
        )
    parts.extend(_legend(list(series)))
    parts.append("</svg>")
    return "\n".join(parts) + "\n"


def line(title, unit, xs, ys, x_label):
    top = _nice_top(max(ys, default=1) * 1.1)
    parts = _frame(title, unit, top)
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
    span = (max(xs) - min(xs)) or 1
    points = [
        (LEFT + plot_w * (x - min(xs)) / span, TOP + plot_h - plot_h * y / top)
        for x, y in zip(xs, ys, strict=True)
    ]
    path = " ".join(f"{x:.1f},{y:.1f}" for x, y in points)
    parts.append(f'<polyline points="{path}" fill="none" stroke="{COLOURS[1]}" stroke-width="2"/>')
    for (px, py), x, y in zip(points, xs, ys, strict=True):
        parts.append(
            f'<circle cx="{px:.1f}" cy="{py:.1f}" r="3" fill="{COLOURS[1]}"/>'
            f'<text x="{px:.1f}" y="{py - 8:.1f}" text-anchor="middle" '
            f'font-size="11">{y:.4g}</text>'
            f'<text x="{px:.1f}" y="{HEIGHT - BOTTOM + 18}" text-anchor="middle">{x}</text>'
        )
    parts.append(
        f'<text x="{LEFT + plot_w / 2}" y="{HEIGHT - 12}" text-anchor="middle">'
        f"{escape(x_label)}</text></svg>"
    )
    return "\n".join(parts) + "\n"


def _legend(names, offset=0, y=HEIGHT - 30):
    parts = []
    x = LEFT
    for n, name in enumerate(names):
        parts.append(
            f'<rect x="{x}" y="{y}" width="12" height="12" '
            f'fill="{COLOURS[(n + offset) % len(COLOURS)]}"/>'
            f'<text x="{x + 16}" y="{y + 10}">{escape(name)}</text>'
        )
        x += 30 + 8 * len(name)
    return parts


def bars_range(title, unit, groups, series, *, reference=None):
    """Grouped bars at the median with a whisker from the lowest to the highest round.

    ``series``: {name: [{"median", "min", "max"} per group]}; ``reference``: an optional
    (value, label) drawn as a dashed horizontal line (a target, a configured rate).
    """
    highest = [v["max"] for values in series.values() for v in values if v["max"] is not None]
    if reference:
        highest.append(reference[0])
    top = _nice_top(max(highest, default=1) * 1.15)
    parts = _frame(title, unit, top)
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
    group_w = plot_w / max(1, len(groups))
    bar_w = group_w * 0.7 / max(1, len(series))

    def y(value):
        return TOP + plot_h - plot_h * value / top

    for g, label in enumerate(groups):
        x0 = LEFT + g * group_w + group_w * 0.15
        for s, (_name, values) in enumerate(series.items()):
            figure = values[g]
            if figure["median"] is None:
                continue
            x = x0 + s * bar_w
            middle = x + (bar_w - 2) / 2
            parts.append(
                f'<rect x="{x:.1f}" y="{y(figure["median"]):.1f}" width="{bar_w - 2:.1f}" '
                f'height="{plot_h * figure["median"] / top:.1f}" '
                f'fill="{COLOURS[s % len(COLOURS)]}"/>'
                f'<line x1="{middle:.1f}" x2="{middle:.1f}" y1="{y(figure["min"]):.1f}" '
                f'y2="{y(figure["max"]):.1f}" stroke="black" stroke-width="1.5"/>'
                f'<line x1="{middle - 5:.1f}" x2="{middle + 5:.1f}" y1="{y(figure["min"]):.1f}" '
                f'y2="{y(figure["min"]):.1f}" stroke="black"/>'
                f'<line x1="{middle - 5:.1f}" x2="{middle + 5:.1f}" y1="{y(figure["max"]):.1f}" '
                f'y2="{y(figure["max"]):.1f}" stroke="black"/>'
                f'<text x="{middle:.1f}" y="{y(figure["max"]) - 5:.1f}" text-anchor="middle" '
                f'font-size="11">{figure["median"]:.4g}</text>'
            )
        parts.append(
            f'<text x="{LEFT + g * group_w + group_w / 2:.1f}" y="{HEIGHT - BOTTOM + 18}" '
            f'text-anchor="middle">{escape(label)}</text>'
        )
    if reference:
        parts.extend(_reference(reference, y))
    parts.extend(_legend(list(series)))
    parts.append("</svg>")
    return "\n".join(parts) + "\n"


def lines(title, unit, series, x_label, *, reference=None):
    """One polyline per series ({name: [(x, y), ...]}), a legend, an optional dashed
    reference line ((value, label)); for values over time."""
    points = [p for values in series.values() for p in values]
    highest = [p[1] for p in points]
    if reference:
        highest.append(reference[0])
    top = _nice_top(max(highest, default=1) * 1.1)
    x_min = min((p[0] for p in points), default=0)
    x_max = max((p[0] for p in points), default=1)
    span = (x_max - x_min) or 1
    parts = _frame(title, unit, top)
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM

    def y(value):
        return TOP + plot_h - plot_h * value / top

    for step in range(5):
        value = x_min + span * step / 4
        x = LEFT + plot_w * step / 4
        parts.append(
            f'<text x="{x:.1f}" y="{TOP + plot_h + 16}" text-anchor="middle">{value:.4g}</text>'
        )
    for s, (_name, values) in enumerate(series.items()):
        path = " ".join(
            f"{LEFT + plot_w * (px - x_min) / span:.1f},{y(py):.1f}" for px, py in values
        )
        parts.append(
            f'<polyline points="{path}" fill="none" stroke="{COLOURS[(s + 1) % len(COLOURS)]}" '
            f'stroke-width="1.5"/>'
        )
    if reference:
        parts.extend(_reference(reference, y))
    parts.append(
        f'<text x="{LEFT + plot_w / 2}" y="{TOP + plot_h + 32}" text-anchor="middle">'
        f"{escape(x_label)}</text>"
    )
    parts.extend(_legend(list(series), offset=1, y=HEIGHT - 18))
    parts.append("</svg>")
    return "\n".join(parts) + "\n"


def _reference(reference, y):
    value, label = reference
    return [
        f'<line x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{y(value):.1f}" y2="{y(value):.1f}" '
        f'stroke="#d62728" stroke-dasharray="6 4" stroke-width="1.5"/>'
        f'<text x="{WIDTH - RIGHT - 4}" y="{y(value) - 5:.1f}" text-anchor="end" '
        f'fill="#d62728" font-size="11">{escape(label)}</text>'
    ]
