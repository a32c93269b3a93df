"""Small charts drawn on the server as SVG, for admin pages.

No JavaScript and nothing fetched from a CDN: the page works behind any firewall and
the figures are in the HTML, so a screen reader (and a test) can read them. Each bar
carries a ``<title>`` with its exact value, shown as a tooltip on hover.
"""

from django.utils.html import escape
from django.utils.safestring import mark_safe

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
