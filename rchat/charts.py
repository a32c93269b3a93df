"""Small charts drawn on the server as SVG, for admin pages.

No JavaScript and nothing fetched from a CDN: the page works behind any firewall and
the figures are in the HTML, so a screen reader (and a test) can read them. Each bar
carries a ``<title>`` with its exact value, shown as a tooltip on hover.
"""

from django.utils.html import escape
from django.utils.safestring import mark_safe
from django.utils.translation import gettext

# Readable on Django admin's light and dark themes alike.
PALETTE = ("#417690", "#79aec8", "#ba2121", "#5b8c00")


def _nice_ceiling(value):
    """The smallest of 1, 2, 5, 10, 20, 50 … that is at least ``value`` (axis top)."""
    if value <= 0:
        return 1
    step = 1
    while True:
        for factor in (1, 2, 5):
            if step * factor >= value:
                return step * factor
        step *= 10


def grouped_bar_chart(*, labels, series, title, width=860, height=260, label_every=1):
    """An SVG bar chart with one group of bars per label.

    ``labels`` names each group (e.g. a day); ``series`` is a list of
    ``(name, values)`` pairs, each ``values`` as long as ``labels``. Every bar has a
    ``<title>`` "label · name: value". Returns safe HTML.
    """
    margin_left, margin_right, margin_top, margin_bottom = 40, 10, 28, 40
    plot_w = width - margin_left - margin_right
    plot_h = height - margin_top - margin_bottom
    top = _nice_ceiling(max((max(values, default=0) for _, values in series), default=0))
    groups = max(len(labels), 1)
    group_w = plot_w / groups
    bar_w = max(group_w * 0.8 / max(len(series), 1), 1)

    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" class="rchat-chart" role="img" '
        f'width="{width}" height="{height}" viewBox="0 0 {width} {height}" '
        f'aria-label="{escape(title)}">',
        f"<title>{escape(title)}</title>",
    ]
    # Horizontal grid lines with their values: 0, half, top.
    for fraction in (0, 0.5, 1):
        y = margin_top + plot_h * (1 - fraction)
        value = top * fraction
        shown = f"{value:g}"
        parts.append(
            f'<line x1="{margin_left}" y1="{y:.1f}" x2="{width - margin_right}" y2="{y:.1f}" '
            f'stroke="#ccc" stroke-width="1"/>'
            f'<text x="{margin_left - 6}" y="{y + 4:.1f}" font-size="11" text-anchor="end" '
            f'fill="currentColor">{shown}</text>'
        )
    for index, label in enumerate(labels):
        x0 = margin_left + index * group_w + group_w * 0.1
        for position, (name, values) in enumerate(series):
            value = values[index]
            bar_h = plot_h * value / top
            x = x0 + position * bar_w
            y = margin_top + plot_h - bar_h
            color = PALETTE[position % len(PALETTE)]
            parts.append(
                f'<rect class="rchat-bar" x="{x:.1f}" y="{y:.1f}" width="{bar_w:.1f}" '
                f'height="{bar_h:.1f}" fill="{color}" data-label="{escape(label)}" '
                f'data-series="{escape(name)}" data-value="{value}">'
                f"<title>{escape(label)} · {escape(name)}: {value}</title></rect>"
            )
        if index % label_every == 0:
            cx = margin_left + (index + 0.5) * group_w
            parts.append(
                f'<text x="{cx:.1f}" y="{height - margin_bottom + 16}" font-size="11" '
                f'text-anchor="middle" fill="currentColor">{escape(label)}</text>'
            )
    # Legend, top left.
    x = margin_left
    for position, (name, _values) in enumerate(series):
        color = PALETTE[position % len(PALETTE)]
        parts.append(
            f'<rect x="{x}" y="6" width="12" height="12" fill="{color}"/>'
            f'<text x="{x + 16}" y="16" font-size="12" fill="currentColor">{escape(name)}</text>'
        )
        x += 24 + 8 * len(str(name))
    parts.append("</svg>")
    return mark_safe("".join(parts))  # noqa: S308 - every interpolated text is escaped


def ratio_bar(*, parts, title, width=860, height=22):
    """A single horizontal bar split into ``parts`` (``(name, value)`` pairs).

    Used for the delivery success rate: sent vs failed. Returns safe HTML.
    """
    total = sum(value for _, value in parts)
    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" class="rchat-ratio" role="img" '
        f'width="{width}" height="{height}" viewBox="0 0 {width} {height}" '
        f'aria-label="{escape(title)}"><title>{escape(title)}</title>'
    ]
    if not total:
        out.append(f'<rect x="0" y="0" width="{width}" height="{height}" fill="#ddd"/>')
    x = 0.0
    for position, (name, value) in enumerate(parts):
        if not total or not value:
            continue
        w = width * value / total
        color = ("#5b8c00", "#ba2121", "#79aec8")[position % 3]
        out.append(
            f'<rect x="{x:.1f}" y="0" width="{w:.1f}" height="{height}" fill="{color}" '
            f'data-series="{escape(name)}" data-value="{value}">'
            f"<title>{escape(name)}: {value}</title></rect>"
        )
        x += w
    out.append("</svg>")
    return mark_safe("".join(out))  # noqa: S308 - every interpolated text is escaped


def _legend(parts, series, *, x, colors=PALETTE):
    for position, (name, _values) in enumerate(series):
        color = colors[position % len(colors)]
        parts.append(
            f'<rect x="{x}" y="6" width="12" height="12" fill="{color}"/>'
            f'<text x="{x + 16}" y="16" font-size="12" fill="currentColor">{escape(name)}</text>'
        )
        x += 24 + 8 * len(str(name))


def _open_svg(css_class, title, width, height):
    return [
        f'<svg xmlns="http://www.w3.org/2000/svg" class="{css_class}" role="img" '
        f'width="{width}" height="{height}" viewBox="0 0 {width} {height}" '
        f'aria-label="{escape(title)}">',
        f"<title>{escape(title)}</title>",
    ]


def _grid(parts, *, top, left, right, plot_top, plot_h, shown=lambda value: f"{value:g}"):
    """Horizontal grid lines at 0, half and ``top``, with their values on the left."""
    for fraction in (0, 0.5, 1):
        y = plot_top + plot_h * (1 - fraction)
        parts.append(
            f'<line x1="{left}" y1="{y:.1f}" x2="{right}" y2="{y:.1f}" '
            f'stroke="#ccc" stroke-width="1"/>'
            f'<text x="{left - 6}" y="{y + 4:.1f}" font-size="11" text-anchor="end" '
            f'fill="currentColor">{escape(shown(top * fraction))}</text>'
        )


#: Stacked parts: the bot (green), people (blue), the rest (grey).
STACK_PALETTE = ("#5b8c00", "#417690", "#b0b8c0")


def stacked_bar_chart(*, labels, series, title, width=860, height=260, label_every=1):
    """An SVG chart with one bar per label, made of ``series`` stacked bottom up.

    ``series`` is a list of ``(name, values)`` pairs, each ``values`` as long as
    ``labels``. Every part has a ``<title>`` "label · name: value" and ``data-label``,
    ``data-series``, ``data-value`` attributes. Returns safe HTML.
    """
    margin_left, margin_right, margin_top, margin_bottom = 40, 10, 28, 40
    plot_w = width - margin_left - margin_right
    plot_h = height - margin_top - margin_bottom
    totals = [sum(values[index] for _, values in series) for index in range(len(labels))]
    top = _nice_ceiling(max(totals, default=0))
    group_w = plot_w / max(len(labels), 1)
    bar_w = max(group_w * 0.7, 1)

    parts = _open_svg("rchat-chart", title, width, height)
    _grid(
        parts,
        top=top,
        left=margin_left,
        right=width - margin_right,
        plot_top=margin_top,
        plot_h=plot_h,
    )
    for index, label in enumerate(labels):
        x = margin_left + index * group_w + (group_w - bar_w) / 2
        base = margin_top + plot_h
        for position, (name, values) in enumerate(series):
            value = values[index]
            bar_h = plot_h * value / top
            base -= bar_h
            color = STACK_PALETTE[position % len(STACK_PALETTE)]
            parts.append(
                f'<rect class="rchat-stack" x="{x:.1f}" y="{base:.1f}" width="{bar_w:.1f}" '
                f'height="{bar_h:.1f}" fill="{color}" data-label="{escape(label)}" '
                f'data-series="{escape(name)}" data-value="{value}">'
                f"<title>{escape(label)} · {escape(name)}: {value}</title></rect>"
            )
        if index % label_every == 0:
            cx = margin_left + (index + 0.5) * group_w
            parts.append(
                f'<text x="{cx:.1f}" y="{height - margin_bottom + 16}" font-size="11" '
                f'text-anchor="middle" fill="currentColor">{escape(label)}</text>'
            )
    _legend(parts, series, x=margin_left, colors=STACK_PALETTE)
    parts.append("</svg>")
    return mark_safe("".join(parts))  # noqa: S308 - every interpolated text is escaped


def horizontal_bar_chart(*, items, title, width=860, row_height=24, label_width=300):
    """An SVG chart with one horizontal bar per ``(label, value)`` of ``items``, its
    label on the left and its value at its end (for long labels, such as reasons).

    Every bar has a ``<title>`` "label: value" and ``data-label`` / ``data-value``
    attributes. Returns safe HTML.
    """
    height = row_height * max(len(items), 1) + 8
    plot_w = width - label_width - 50
    top = _nice_ceiling(max((value for _, value in items), default=0))
    parts = _open_svg("rchat-chart rchat-hbar", title, width, height)
    for index, (label, value) in enumerate(items):
        y = 4 + index * row_height
        bar_w = plot_w * value / top
        parts.append(
            f'<text x="{label_width - 8}" y="{y + row_height * 0.65:.1f}" font-size="12" '
            f'text-anchor="end" fill="currentColor">{escape(label)}</text>'
            f'<rect class="rchat-hbar-bar" x="{label_width}" y="{y + 3}" width="{bar_w:.1f}" '
            f'height="{row_height - 6}" fill="{PALETTE[0]}" data-label="{escape(label)}" '
            f'data-value="{value}"><title>{escape(label)}: {value}</title></rect>'
            f'<text x="{label_width + bar_w + 6:.1f}" y="{y + row_height * 0.65:.1f}" '
            f'font-size="12" fill="currentColor">{value}</text>'
        )
    parts.append("</svg>")
    return mark_safe("".join(parts))  # noqa: S308 - every interpolated text is escaped


def line_chart(
    *, labels, series, title, shown=str, ceiling=None, width=860, height=240, label_every=1
):
    """An SVG chart with one line per ``(name, values)`` of ``series`` over ``labels``.

    A value of None leaves a gap (the line is broken there). ``shown`` turns a value
    into the text of the axis and of each point's ``<title>`` (e.g. a duration), and
    ``ceiling`` the largest value into the axis' top (default: 1, 2, 5, 10 …). Each
    point has ``data-label``, ``data-series`` and ``data-value``. Returns safe HTML.
    """
    margin_left, margin_right, margin_top, margin_bottom = 64, 10, 28, 40
    plot_w = width - margin_left - margin_right
    plot_h = height - margin_top - margin_bottom
    found = [value for _, values in series for value in values if value is not None]
    top = (ceiling or _nice_ceiling)(max(found, default=0))
    step = plot_w / max(len(labels), 1)

    parts = _open_svg("rchat-chart rchat-line", title, width, height)
    _grid(
        parts,
        top=top,
        left=margin_left,
        right=width - margin_right,
        plot_top=margin_top,
        plot_h=plot_h,
        shown=shown,
    )
    for position, (name, values) in enumerate(series):
        color = PALETTE[position % len(PALETTE)]
        runs, run = [], []
        for index, value in enumerate(values):
            if value is None:
                if run:
                    runs.append(run)
                run = []
                continue
            x = margin_left + (index + 0.5) * step
            y = margin_top + plot_h * (1 - value / top)
            run.append((x, y))
            parts.append(
                f'<circle class="rchat-point" cx="{x:.1f}" cy="{y:.1f}" r="3" fill="{color}" '
                f'data-label="{escape(labels[index])}" data-series="{escape(name)}" '
                f'data-value="{value:g}"><title>{escape(labels[index])} · {escape(name)}: '
                f"{escape(shown(value))}</title></circle>"
            )
        if run:
            runs.append(run)
        for points in runs:
            if len(points) > 1:
                path = " ".join(f"{x:.1f},{y:.1f}" for x, y in points)
                parts.append(
                    f'<polyline points="{path}" fill="none" stroke="{color}" stroke-width="2"/>'
                )
    for index, label in enumerate(labels):
        if index % label_every == 0:
            cx = margin_left + (index + 0.5) * step
            parts.append(
                f'<text x="{cx:.1f}" y="{height - margin_bottom + 16}" font-size="11" '
                f'text-anchor="middle" fill="currentColor">{escape(label)}</text>'
            )
    _legend(parts, series, x=margin_left)
    parts.append("</svg>")
    return mark_safe("".join(parts))  # noqa: S308 - every interpolated text is escaped


def duration_ceiling(seconds):
    """An axis top for waiting times: a round number of seconds, minutes or hours."""
    for unit in (3600, 60):
        if seconds >= unit:
            return unit * _nice_ceiling(seconds / unit)
    return _nice_ceiling(seconds)


def duration_text(seconds):
    """A waiting time in words short enough for an axis: "8 s", "5 min", "2.5 h"; "—"
    for None."""
    if seconds is None:
        return "—"
    if seconds < 60:
        return gettext("%(n)s s") % {"n": f"{seconds:.3g}"}
    if seconds < 3600:
        return gettext("%(n)s min") % {"n": f"{seconds / 60:.3g}"}
    return gettext("%(n)s h") % {"n": f"{seconds / 3600:.3g}"}
