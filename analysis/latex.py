"""LaTeX tables a paper can ``\\input``: they fit a one-column article's text width.

Set as compactly as the paper's own tables: ``\\footnotesize``, narrow column gaps, a cell's mean on its first line
and its spread (``± sd``) or interval on a smaller second line, headers broken over two lines, long labels and
texts wrapped, bold that is bold (``{\\boldmath$...$}``, never ``\\textbf`` around maths), and the number of runs
said once: in the caption when every cell has the same n, in an ``n`` column when each row does, in the cell
otherwise (a cell with fewer finished runs than planned always says so). A table whose columns still do not fit is
scaled to the text width (``\\resizebox``: the last resort, its factor said in the leading comment). A table may
name the columns its LaTeX version keeps (``TableSpec.latex_columns``: the CSV and Markdown hold them all).

Packages: booktabs, graphicx (``\\resizebox``), amsmath, array; each file says so in its first line. In a
two-column document, use ``table*`` or ``\\resizebox{\\columnwidth}{!}{...}`` around the tabular.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from analysis.render import MISSING, TableSpec, latex_escape

TEXT_WIDTH_PT = 345.0  # the text width of LaTeX's one-column article at 10 pt
CHAR_PT = 4.3  # a digit of \footnotesize (8 pt: 0.5 em) and a little for signs and brackets
SMALL_CHAR_PT = 3.6  # a digit of \scriptsize (the second line of a cell)
COLSEP_PT = 3.0  # \tabcolsep
WRAP_CHARS = 18  # a text or label longer than this is wrapped in a column of that width
PACKAGES = (
    "% Needs \\usepackage{{booktabs,graphicx,amsmath,array}}. Fits a one-column article's text width ({}); in two "
    "columns use table* or \\resizebox{{\\columnwidth}}{{!}}{{...}} around the tabular."
)


@dataclass
class _Cell:
    """A cell as printed: its first line, its second (smaller) line, and its width estimate in pt."""

    top: str
    bottom: str = ""
    width: float = 0.0

    def latex(self) -> str:
        if not self.bottom:
            return self.top
        return f"\\begin{{tabular}}[c]{{@{{}}c@{{}}}}{self.top}\\\\[-2pt]{{\\scriptsize {self.bottom}}}\\end{{tabular}}"


def _number_cell(spec: TableSpec, row: str, column: str, count: str) -> _Cell:
    """A number cell: the mean (bold when best), then ``± sd`` and/or the interval, then ``count``."""
    body, best = spec.text(row, column)
    first, _, spread = body.partition(" \\pm ")
    first, _, interval = first.partition(" [")
    if interval:
        interval = "[" + interval
    elif " [" in spread:
        spread, _, interval = spread.partition(" [")
        interval = "[" + interval
    top = f"{{\\boldmath${first}$}}" if best else f"${first}$"
    bits = [f"$\\pm {spread}$" if spread else "", f"${interval}$" if interval else "", f"({count})" if count else ""]
    bottom = " ".join(b for b in bits if b)
    width = max(
        len(first) * CHAR_PT,
        len(" ".join(filter(None, [spread and "± " + spread, interval, count and f"({count})"]))) * SMALL_CHAR_PT,
    )
    return _Cell(top, bottom, width)


def breakable(text: str) -> str:
    """``text`` escaped for LaTeX, with a line break allowed after ``_``, ``/``, ``=`` and a dot before a letter (keys and paths in a
    wrapped column would otherwise run past its edge)."""
    escaped = latex_escape(text)
    escaped = (
        escaped.replace("\\_", "\\_\\allowbreak{}").replace("/", "/\\allowbreak{}").replace("=", "=\\allowbreak{}")
    )
    return re.sub(r"\.(?=[A-Za-z])", ".\\\\allowbreak{}", escaped)


def _text_cell(text: str, count: str) -> _Cell:
    top = breakable(text)
    bottom = f"({count})" if count else ""
    return _Cell(top, bottom, min(len(text), WRAP_CHARS) * CHAR_PT)


def _counts(spec: TableSpec, columns: list[str]) -> tuple[str, dict[str, str]]:
    """Where n is said: ``("caption", {"": n})`` when every counted cell has one n, ``("column", {row: n})`` when
    each row has one, ``("header", {column: n})`` when each column has one, else ``("cell", {})``. A cell with
    fewer finished runs than planned says its own in any case."""
    per_row: dict[str, set[str]] = {}
    per_column: dict[str, set[str]] = {}
    for row in spec.rows:
        for column in columns:
            cell = spec.cell(row, column)
            count = spec.count(row, column)
            if count and not cell.short and not cell.missing:
                per_row.setdefault(row, set()).add(count)
                per_column.setdefault(column, set()).add(count)
    every = set().union(*per_row.values()) if per_row else set()
    if len(every) == 1:
        return "caption", {"": next(iter(every))}
    if per_row and all(len(v) == 1 for v in per_row.values()):
        return "column", {row: next(iter(v)) for row, v in per_row.items()}
    if per_column and all(len(v) == 1 for v in per_column.values()):
        return "header", {column: next(iter(v)) for column, v in per_column.items()}
    return "cell", {}


def _header(label: str, count: str = "") -> _Cell:
    """A column header, broken at the space nearest its middle when long; a count goes on its second line."""
    text = latex_escape(label)
    if count:
        return _Cell(text, latex_escape(count), max(len(label), len(count)) * CHAR_PT)
    if len(label) <= 9 or " " not in label:
        return _Cell(text, "", len(label) * CHAR_PT)
    spaces = [i for i, ch in enumerate(label) if ch == " "]
    cut = min(spaces, key=lambda i: abs(i - len(label) / 2))
    top, bottom = label[:cut], label[cut + 1 :]
    return _Cell(latex_escape(top), latex_escape(bottom), max(len(top), len(bottom)) * CHAR_PT)


def _stacked_header(cell: _Cell) -> str:
    if not cell.bottom:
        return cell.top
    return f"\\begin{{tabular}}[b]{{@{{}}c@{{}}}}{cell.top}\\\\{cell.bottom}\\end{{tabular}}"


def _wrapped(width_pt: float) -> str:
    return f">{{\\raggedright\\arraybackslash}}p{{{width_pt / 28.45:.2f}cm}}"


def to_latex(spec: TableSpec) -> str:
    """The table as LaTeX that fits a one-column article (see the module docstring)."""
    columns = [c for c in spec.columns if spec.latex_columns is None or c in spec.latex_columns]
    where, row_counts = _counts(spec, columns)
    grid: list[list[_Cell]] = []
    for row in spec.rows:
        cells = []
        for column in columns:
            cell = spec.cell(row, column)
            count = spec.count(row, column)
            count = count if (where == "cell" or cell.short) else ""
            if cell.text is not None or cell.missing:
                text, _ = spec.text(row, column)
                cells.append(_text_cell(text if cell.text is not None else MISSING, count))
            else:
                cells.append(_number_cell(spec, row, column, count))
        if where == "column":
            cells.append(_Cell(latex_escape(row_counts.get(row, "").removeprefix("n=")), "", 8 * CHAR_PT))
        grid.append(cells)
    headers = [_header(c, f"({row_counts[c]})" if where == "header" and c in row_counts else "") for c in columns]
    headers += [_Cell("n", "", CHAR_PT)] if where == "column" else []
    labels = [latex_escape(spec.label(r)) for r in spec.rows]
    label_width = max([len(spec.label(r)) for r in spec.rows] + [len(spec.row_header)]) * CHAR_PT
    formats = [_wrapped(WRAP_CHARS * CHAR_PT) if label_width > WRAP_CHARS * CHAR_PT else "l"]
    widths = [min(label_width, WRAP_CHARS * CHAR_PT)]
    for j, header in enumerate(headers):
        texts = [grid[i][j] for i in range(len(grid))]
        wraps = (
            any(
                spec.cell(r, columns[j]).text is not None and len(spec.cell(r, columns[j]).text or "") > WRAP_CHARS
                for r in spec.rows
            )
            if j < len(columns)
            else False
        )
        formats.append(_wrapped(WRAP_CHARS * CHAR_PT) if wraps else "c")
        widths.append(max([header.width] + [c.width for c in texts]))
    total = sum(widths) + 2 * COLSEP_PT * len(widths)
    if spec.latex_format is not None:  # a text table sets its own columns
        formats = [
            re.sub(r"(?<!arraybackslash\})p\{", r">{\\raggedright\\arraybackslash}p{", spec.latex_format)
        ]  # ragged
        total = _format_width(spec.latex_format) + 2 * COLSEP_PT * (len(spec.columns) + 1)
    caption = spec.full_caption
    if where == "caption":
        caption += f" Every cell: {row_counts['']} (finished runs; pairs for a difference)."
    elif where == "column":
        caption += " n: the row's finished runs (pairs for a difference) behind every cell."
    if spec.latex_columns is not None:
        left = [c for c in spec.columns if c not in spec.latex_columns]
        caption += f" The CSV and Markdown versions also give {', '.join(left)}."
    lines = [
        PACKAGES.format(f"estimated {total:.0f} of {TEXT_WIDTH_PT:.0f} pt; scaled down only if wider"),
        "\\begin{table}[t]",
        "\\centering",
        "\\footnotesize",
        f"\\setlength{{\\tabcolsep}}{{{COLSEP_PT:g}pt}}",
        f"\\caption{{{latex_escape(caption)}}}",
        f"\\label{{tab:{spec.table_id}}}",
    ]
    lines.append("\\sbox0{%")  # the tabular at its natural width, scaled below only if wider than the text
    lines += [f"\\begin{{tabular}}{{{''.join(formats)}}}", "\\toprule"]
    lines.append(" & ".join([latex_escape(spec.row_header)] + [_stacked_header(h) for h in headers]) + " \\\\")
    lines.append("\\midrule")
    for label, cells in zip(labels, grid):
        lines.append(" & ".join([label] + [c.latex() for c in cells]) + " \\\\")
    lines += [
        "\\bottomrule",
        "\\end{tabular}}%",
        f"\\typeout{{table {spec.table_id}: natural width \\the\\wd0 \\space of \\the\\linewidth}}%",
        "\\ifdim\\wd0>\\linewidth\\resizebox{\\linewidth}{!}{\\usebox0}\\else\\usebox0\\fi",
        "\\end{table}",
    ]
    return "\n".join(lines) + "\n"


def _format_width(fmt: str) -> float:
    """The width in pt of a column format's ``p{..cm}`` columns (an ``l`` column counted as a short label)."""
    widths = [float(v) * 28.45 for v in re.findall(r"p\{([\d.]+)cm\}", fmt)]
    return sum(widths) + fmt.count("l") * 10 * CHAR_PT
