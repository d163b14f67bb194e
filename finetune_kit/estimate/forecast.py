"""When a run would emit least: a grid-intensity forecast (timestamp, g CO2eq/kWh, as carbon-intensity services
export it) and the run's estimated duration give the start whose window has the lowest mean intensity.

Reading the file and planning are apart from waiting: `plan_start` is a pure function of the forecast's rows, the
duration and the time now, so the choice can be checked without waiting for it."""

from __future__ import annotations

import csv
import math
import re
import unicodedata
from bisect import bisect_right
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path

from finetune_kit.errors import UserError

# Column names as the services export them, compared lower-case, without units in brackets or punctuation
# ("Datetime (UTC)" is datetime, "Carbon Intensity gCO₂eq/kWh (direct)" carbonintensitygco2eqkwh); the first
# name found wins.
TIME_COLUMNS = ("datetime", "timestamp", "from", "time", "start")
INTENSITY_COLUMNS = ("carbonintensity", "carbonintensitygco2eqkwh", "intensity", "forecast", "gco2eqkwh", "gco2kwh")


@dataclass(frozen=True)
class ForecastRow:
    """One row of a forecast: its intensity holds from `time` until the next row's time."""

    time: datetime  # time-zone aware
    g_per_kwh: float


@dataclass(frozen=True)
class Window:
    start: datetime
    end: datetime
    g_per_kwh: float  # the mean over the window, each row weighted by the time it covers in it


class ForecastTooShort(Exception):
    """No window of the run's duration fits in what the forecast covers from now on."""

    def __init__(self, covered_s: float, duration_s: float, end: datetime) -> None:
        super().__init__(f"the forecast covers {covered_s:.0f} s from now, the run needs {duration_s:.0f} s")
        self.covered_s, self.duration_s, self.end = covered_s, duration_s, end


@dataclass(frozen=True)
class StartPlan:
    best: Window  # the lowest mean intensity; the earliest such window on a tie
    earliest: Window  # starting as soon as the forecast allows: now, or its first time when that is later

    def saved_g(self, kwh: float) -> float:
        """What `kwh` emits less in the best window than in the earliest."""
        return kwh * (self.earliest.g_per_kwh - self.best.g_per_kwh)


def read_forecast(path: Path) -> list[ForecastRow]:
    """The rows of a forecast CSV, checked: a header naming a time and an intensity column, ISO 8601 times in
    increasing order (without a time zone they are UTC, as the services export them), intensities ≥ 0."""
    try:
        with path.open(encoding="utf-8-sig", newline="") as file:
            records = list(csv.reader(file))
    except (OSError, UnicodeDecodeError) as err:
        raise UserError(f"--start-when {path}: cannot read it ({err})") from None
    if not records:
        raise UserError(f"{path.name} is empty; expected a header (e.g. datetime,carbon_intensity) and rows")
    time_column, intensity_column = _columns(records[0], path.name)
    rows: list[ForecastRow] = []
    for line, record in enumerate(records[1:], start=2):
        if not any(cell.strip() for cell in record):
            continue
        where = f"{path.name} line {line}"
        if len(record) <= max(time_column, intensity_column):
            raise UserError(f"{where} has {len(record)} columns; the header has {len(records[0])}")
        row = ForecastRow(_time(record[time_column], where), _intensity(record[intensity_column], where))
        if rows and row.time <= rows[-1].time:
            raise UserError(f"{where}: {record[time_column].strip()} is not after the row before it")
        rows.append(row)
    if not rows:
        raise UserError(f"{path.name} has a header but no rows")
    return rows


def plan_start(rows: Sequence[ForecastRow], duration_s: float, now: datetime) -> StartPlan:
    """The start, from `now` on, whose `duration_s` window has the lowest mean intensity. Each row's intensity holds
    until the next row's time, the last row's for as long as the one before it; what lies before `now` is ignored.
    The mean changes linearly between the starts where the window's start or end meets a row's time, so the lowest
    mean is at one of those starts. Raises ForecastTooShort when no window is long enough."""
    if duration_s <= 0:
        raise ValueError(f"duration_s must be positive, got {duration_s}")
    origin = rows[0].time
    edges = [(row.time - origin).total_seconds() for row in rows]
    edges.append(edges[-1] + (edges[-1] - edges[-2] if len(edges) > 1 else 0.0))
    integral = [0.0]  # g/kWh x seconds from the first row to each edge
    for row, begin, end in zip(rows, edges, edges[1:], strict=False):
        integral.append(integral[-1] + row.g_per_kwh * (end - begin))

    def area(t: float) -> float:
        i = min(max(bisect_right(edges, t) - 1, 0), len(rows) - 1)
        return integral[i] + rows[i].g_per_kwh * (t - edges[i])

    def window(start: float) -> Window:
        mean = (area(start + duration_s) - area(start)) / duration_s
        return Window(origin + timedelta(seconds=start), origin + timedelta(seconds=start + duration_s), mean)

    first, last = max((now - origin).total_seconds(), 0.0), edges[-1] - duration_s
    if last < first:
        raise ForecastTooShort(max(edges[-1] - first, 0.0), duration_s, origin + timedelta(seconds=edges[-1]))
    starts = {first, last} | {t for edge in edges for t in (edge, edge - duration_s) if first <= t <= last}
    windows = [window(start) for start in sorted(starts)]
    best = min(windows, key=lambda w: round(w.g_per_kwh, 9))  # min keeps the earliest of equal means
    return StartPlan(best, windows[0])


def _columns(header: list[str], name: str) -> tuple[int, int]:
    keys = [_key(column) for column in header]
    time = next((keys.index(k) for k in TIME_COLUMNS if k in keys), None)
    intensity = next((keys.index(k) for k in INTENSITY_COLUMNS if k in keys), None)
    if time is None or intensity is None:
        missing = " and ".join(
            what
            for what, found in (
                ("a time column (datetime, timestamp or from)", time),
                ("an intensity column (carbon_intensity, intensity, forecast or gCO2eq/kWh)", intensity),
            )
            if found is None
        )
        found = ", ".join(repr(column) for column in header)
        raise UserError(f"{name}: no {missing} among its columns {found}")
    return time, intensity


def _key(column: str) -> str:
    text = re.sub(r"\(.*?\)", "", unicodedata.normalize("NFKC", column).lower())
    return re.sub(r"[^a-z0-9]", "", text)


def _time(text: str, where: str) -> datetime:
    value = text.strip()
    try:  # Python before 3.11 reads no "Z"
        parsed = datetime.fromisoformat(value[:-1] + "+00:00" if value.endswith(("Z", "z")) else value)
    except ValueError:
        raise UserError(f"{where}: {value!r} is not an ISO 8601 time (2025-06-01T14:00:00+02:00)") from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=timezone.utc)


def _intensity(text: str, where: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not math.isfinite(value) or value < 0:
        raise UserError(f"{where}: {text.strip()!r} is not an intensity in g CO2eq/kWh (a number ≥ 0)")
    return value
