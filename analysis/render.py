"""Render a table of mean +- std cells to LaTeX (booktabs, via pandas Styler), CSV and Markdown.

A :class:`TableSpec` holds the numbers: for every row and column a mean, a standard
deviation and the number of values behind it (seeds). Missing cells stay missing
("--" in print, empty in CSV), never zero. The best value of each column is bold
where the column says which direction is better.
"""

from __future__ import annotations

import html
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from moleflow.io import write_text_atomic

MISSING = "--"
FLAG = "†"  # a row some of whose runs the input-collapse diagnostic flagged
#: A cell whose runs all finished without the number: the method does not make it (DNE has no anomaly map, the
#: joint flow no forgetting, a memory bank no base).
NOT_APPLICABLE = "n/a"


@dataclass
class Cell:
    """A table cell: numbers, or a text (a verdict, a note)."""

    mean: float | None = None
    std: float | None = None
    n: int = 0
    text: str | None = None
    planned: int = 0  # runs planned for a cell drawn from runs (0: not such a cell); printed as n or "n of planned"
    interval: tuple[float, float] | None = None  # a 95% interval, printed after the mean
    show_n: bool = False  # print n after the value (a paired difference's number of pairs)

    @classmethod
    def from_runs(cls, values: pd.Series, statuses: pd.Series, planned: int | None = None) -> Cell:
        """Mean +- std (ddof 1) of the finished runs' values; ``diverged`` if none finished but one diverged.

        ``planned``: how many runs the plan has for this cell (default: one per status given,
        missing runs included).
        """
        planned = int(len(statuses)) if planned is None else int(planned)
        finished = values[statuses == "ok"]
        ok = finished[finished.notna()]
        if ok.empty and len(finished) and len(finished) >= planned:  # every run finished without it: not made
            return cls(text=NOT_APPLICABLE, planned=planned, n=int(len(finished)))
        if ok.empty:
            return cls(text="diverged", planned=planned) if (statuses == "diverged").any() else cls(planned=planned)
        return cls(
            mean=float(ok.mean()), std=float(ok.std(ddof=1)) if len(ok) > 1 else None, n=int(len(ok)), planned=planned
        )

    @property
    def short(self) -> bool:
        """Fewer finished runs than planned (a run diverged, failed or is missing)."""
        return 0 < self.planned and self.n < self.planned

    @property
    def missing(self) -> bool:
        return self.text is None and (self.mean is None or not math.isfinite(self.mean))


@dataclass
class TableSpec:
    """One table of the paper.

    Attributes:
        table_id: file stem (``T7_ablation``).
        paper_table: the paper's table number (``"7"``) or a label.
        title: one line.
        caption: says what the cells are (statistic, n, seeds).
        rows, columns: labels in display order.
        cells: ``(row, column) -> Cell``.
        better: column -> ``"max"``/``"min"`` for bold best; absent = no bold.
        digits: decimals shown.
    """

    table_id: str
    paper_table: str
    title: str
    caption: str
    rows: list[str]
    columns: list[str]
    cells: dict[tuple[str, str], Cell] = field(default_factory=dict)
    better: dict[str, str] = field(default_factory=dict)
    digits: int = 3
    row_header: str = ""
    column_digits: dict[str, int] = field(default_factory=dict)
    p_columns: tuple[str, ...] = ()
    latex_format: str | None = None  # LaTeX column format (default: l then c per column); text tables use p{...}
    latex_columns: list[str] | None = None  # the columns the LaTeX version keeps (default all; CSV and Markdown: all)
    flagged: dict[str, str] = field(default_factory=dict)  # row -> why it is marked (runs whose flow input collapsed)

    def cell(self, row: str, column: str) -> Cell:
        return self.cells.get((row, column), Cell())

    def best(self, column: str) -> float | None:
        """The column's best mean among cells with every planned run finished (descriptive: test metrics)."""
        direction = self.better.get(column)
        values = [
            c.mean
            for r in self.rows
            if not (c := self.cell(r, column)).missing and c.text is None and not c.short and c.mean is not None
        ]
        if not direction or not values:
            return None
        return max(values) if direction == "max" else min(values)

    def text(self, row: str, column: str, markdown: bool = False) -> tuple[str, bool]:
        """Display text of a cell and whether it is the column's best."""
        cell = self.cell(row, column)
        if cell.text is not None:
            return cell.text, False
        if cell.missing:
            return MISSING, False
        digits = self.column_digits.get(column, self.digits)
        if column in self.p_columns and cell.mean < 10 ** (-digits):
            return f"<{10 ** (-digits):.{digits}f}", False
        body = f"{cell.mean:.{digits}f}"
        if cell.std is not None and math.isfinite(cell.std) and cell.n > 1:
            body += (" ± " if markdown else " \\pm ") + f"{cell.std:.{digits}f}"
        if cell.interval is not None:
            body += f" [{cell.interval[0]:+.{digits}f}, {cell.interval[1]:+.{digits}f}]"
        best = self.best(column)
        return body, best is not None and not cell.short and abs(cell.mean - best) < 0.5 * 10 ** (-digits)  # type: ignore[operator]  # a cell that is not missing has a mean

    def count(self, row: str, column: str) -> str:
        """``n=3``, or ``n=2 of 3`` when runs planned for the cell did not finish; empty for other cells."""
        cell = self.cell(row, column)
        if cell.show_n and not cell.missing:
            return f"n={cell.n} pair{'s' if cell.n != 1 else ''}"
        if not cell.planned:
            return ""
        return f"n={cell.n} of {cell.planned}" if cell.short else f"n={cell.n}"

    def label(self, row: str) -> str:
        """A row's label as printed: with ``FLAG`` when some of its runs are flagged."""
        return f"{row} {FLAG}" if row in self.flagged else row

    @property
    def flag_note(self) -> str:
        """The footnote of the flagged rows (empty when none is)."""
        if not self.flagged:
            return ""
        rows = "; ".join(f"{row}: {why}" for row, why in self.flagged.items())
        return (
            f" {FLAG}: the flow's input collapsed in some of the row's runs (input_collapse in summary.json: the "
            "maps in front of the flow, which pay no Jacobian under the authors' objective, shrank its input until "
            f"normal and defect patches score alike); the numbers are kept as measured. {rows}."
        )

    @property
    def full_caption(self) -> str:
        """The caption, what n and bold mean when the table has cells drawn from runs, and the flagged rows."""
        if not any(c.planned for c in self.cells.values()):
            return self.caption + self.flag_note
        not_made = (
            " n/a: every run finished and the method makes no such number (DNE has no anomaly map, the joint "
            "flow is trained once and has nothing to forget, a memory bank has no base)."
            if any(c.text == NOT_APPLICABLE for c in self.cells.values())
            else ""
        )
        return (
            self.caption + ' n: finished runs behind a cell; "n=2 of 3" marks a cell some of whose planned runs '
            "diverged, failed or are missing (its mean covers the finished ones only). Bold: the best cell of a "
            "column among cells with every planned run finished, on test data: descriptive, not a selection."
            + not_made
            + self.flag_note
        )


def ordered(values: pd.Series) -> list[str]:
    """The distinct values in order of first appearance (the configuration's variant order)."""
    return list(dict.fromkeys(values.tolist()))


def latex_escape(text: str) -> str:
    for a, b in (
        ("\\", r"\textbackslash{}"),
        ("&", r"\&"),
        ("%", r"\%"),
        ("$", r"\$"),
        ("#", r"\#"),
        ("_", r"\_"),
        ("{", r"\{"),
        ("}", r"\}"),
        ("~", r"\textasciitilde{}"),
        ("^", r"\textasciicircum{}"),
    ):
        text = text.replace(a, b)
    for a, b in (
        ("η²p", r"$\eta^2_p$"),
        ("Δ", r"$\Delta$"),
        ("±", r"$\pm$"),
        ("§", r"\S{}"),
        ("≤", r"$\le$"),
        ("≥", r"$\ge$"),
        ("×", r"$\times$"),
        (FLAG, r"\textsuperscript{\dag}"),
    ):
        text = text.replace(a, b)
    return text


def _display(spec: TableSpec, row: str, column: str, quote: Callable[[str], str], bold: Callable[[str], str]) -> str:
    """One cell as plain text (``±``), quoted for the format, bold when best, with its n."""
    body, best = spec.text(row, column, markdown=True)
    count = spec.count(row, column)
    text = bold(quote(body)) if best else quote(body)
    return f"{text} ({quote(count)})" if count else text


def to_markdown(spec: TableSpec) -> str:
    """A Markdown table with the caption as a paragraph above it."""
    header = [spec.row_header or ""] + spec.columns
    lines = [
        f"**Table {spec.paper_table}: {spec.title}.** {spec.full_caption}",
        "",
        "| " + " | ".join(header) + " |",
        "|" + "---|" * len(header),
    ]
    for row in spec.rows:
        cells = [_display(spec, row, column, str, lambda t: f"**{t}**") for column in spec.columns]
        lines.append("| " + " | ".join([spec.label(row)] + cells) + " |")
    return "\n".join(lines) + "\n"


def to_csv(spec: TableSpec) -> str:
    """Numbers for machines, at full precision.

    A column of numbers gives ``<column> mean``, ``<column> std`` and ``<column> n``; a
    column of texts only (a verdict) gives ``<column>``; a column of numbers with some
    text cells (``diverged``) gives both, the texts in ``<column> text``.
    """
    records = []
    for row in spec.rows:
        record: dict[str, object] = {spec.row_header or "row": row}
        if spec.flagged:
            record["input collapsed"] = spec.flagged.get(row, "")
        for column in spec.columns:
            cell = spec.cell(row, column)
            texts = [spec.cell(r, column).text is not None for r in spec.rows]
            if not all(texts):
                record[f"{column} mean"] = None if cell.missing or cell.text is not None else cell.mean
                record[f"{column} std"] = None if cell.missing or cell.text is not None else cell.std
                record[f"{column} n"] = cell.n
                if any(spec.cell(r, column).planned for r in spec.rows):
                    record[f"{column} planned"] = cell.planned
                if any(spec.cell(r, column).interval is not None for r in spec.rows):
                    record[f"{column} low"], record[f"{column} high"] = cell.interval or (None, None)
            if any(texts):
                record[f"{column} text" if not all(texts) else column] = cell.text
        records.append(record)
    return pd.DataFrame(records).to_csv(index=False, float_format="%.12g")  # exact enough for any count or statistic


def to_html(spec: TableSpec) -> str:
    """An HTML table (pandas Styler) with the caption, for the Snakemake report."""
    data = {
        column: [_display(spec, row, column, html.escape, lambda t: f"<b>{t}</b>") for row in spec.rows]
        for column in spec.columns
    }
    frame = pd.DataFrame(data, index=[spec.label(r) for r in spec.rows])
    frame.index.name = spec.row_header or None
    table = (
        frame.style.set_caption(html.escape(f"Table {spec.paper_table}: {spec.title}. {spec.full_caption}"))
        .set_table_styles(
            [
                {
                    "selector": "td, th",
                    "props": "border: 1px solid #ccc; padding: 2px 6px; vertical-align: top; font-size: 12px",
                },
                {"selector": "caption", "props": "caption-side: top; text-align: left; font-size: 13px; padding: 4px"},
            ]
        )
        .to_html()
    )
    return f'<!DOCTYPE html>\n<html><head><meta charset="utf-8"><title>{html.escape(spec.title)}</title></head><body>{table}</body></html>\n'


def write(spec: TableSpec, folder: str | Path) -> list[str]:
    """Write ``<id>.tex``, ``<id>.csv`` and ``<id>.md`` atomically; return the file names."""
    folder = Path(folder)
    files = []
    from analysis.latex import to_latex  # the LaTeX layout lives apart (it imports this module)

    for suffix, text in ((".tex", to_latex(spec)), (".csv", to_csv(spec)), (".md", to_markdown(spec))):
        write_text_atomic(folder / f"{spec.table_id}{suffix}", text)
        files.append(f"{spec.table_id}{suffix}")
    return files
