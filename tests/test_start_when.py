"""`train --start-when FORECAST.csv`: the forecast read as carbon-intensity services export it, the lowest-intensity
window of the run's estimated duration chosen (a pure function, checked without waiting), the wait, and one run
that starts in its window and records it."""

from __future__ import annotations

import json
import os
import random
import signal
from datetime import datetime, timedelta, timezone

import pytest
from huggingface_hub import ModelCard

from finetune_kit.commands import train as train_command
from finetune_kit.errors import UserError
from finetune_kit.estimate.forecast import ForecastRow, ForecastTooShort, plan_start, read_forecast
from tests.builders import classification_recipe

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=timezone.utc)
HOUR = 3600.0


def forecast(*values: float, start: datetime = NOW, step_min: float = 60) -> list[ForecastRow]:
    return [ForecastRow(start + timedelta(minutes=step_min * i), value) for i, value in enumerate(values)]


def write(tmp_path, text: str, name: str = "forecast.csv"):
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


# -- reading ------------------------------------------------------------------------------------------------------


@pytest.mark.unit
@pytest.mark.parametrize(
    "text",
    [
        "datetime,carbon_intensity\n2026-03-01T12:00:00Z,300\n2026-03-01T13:00:00Z,120.5\n",
        "timestamp,intensity\n2026-03-01T13:00:00+01:00,300\n2026-03-01T14:00:00+01:00,120.5\n",
        # The UK grid's export: from, to, forecast, actual, index.
        "from,to,forecast,actual,index\n2026-03-01T12:00Z,2026-03-01T12:30Z,300,310,high\n"
        "2026-03-01T13:00Z,2026-03-01T13:30Z,120.5,,low\n",
        # A zone's history as Electricity Maps exports it (no time zone: UTC).
        "Datetime (UTC),Zone Id,Carbon Intensity gCO₂eq/kWh (direct),Carbon Intensity gCO₂eq/kWh (LCA)\n"
        "2026-03-01 12:00:00,FR,300,350\n2026-03-01 13:00:00,FR,120.5,150\n",
        "\ufefftime, gCO2eq/kWh\n2026-03-01T12:00:00.000Z , 300 \n\n2026-03-01T13:00:00.000Z,120.5\n",
    ],
    ids=["datetime", "offset", "uk-grid", "electricity-maps", "bom-and-units"],
)
def test_the_services_forms_read_the_same(tmp_path, text):
    assert read_forecast(write(tmp_path, text)) == forecast(300, 120.5)


@pytest.mark.unit
@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "when,value\n2026-03-01T12:00Z,300\n",
            "forecast.csv: no a time column (datetime, timestamp or from) and an intensity column (carbon_intensity, "
            "intensity, forecast or gCO2eq/kWh) among its columns 'when', 'value'",
        ),
        (
            "datetime,moer\n2026-03-01T12:00Z,300\n",
            "forecast.csv: no an intensity column (carbon_intensity, intensity, forecast or gCO2eq/kWh) among its "
            "columns 'datetime', 'moer'",
        ),
        (
            "datetime,intensity\n2026-03-01T12:00Z,300\nnoon,200\n",
            "forecast.csv line 3: 'noon' is not an ISO 8601 time (2025-06-01T14:00:00+02:00)",
        ),
        (
            "datetime,intensity\n2026-03-01T12:00Z,300\n2026-03-01T13:00Z,-5\n",
            "forecast.csv line 3: '-5' is not an intensity in g CO2eq/kWh (a number ≥ 0)",
        ),
        ("datetime,intensity\n2026-03-01T12:00Z,n/a\n", "forecast.csv line 2: 'n/a' is not an intensity"),
        (
            "datetime,intensity\n2026-03-01T12:00Z,300\n2026-03-01T11:00Z,200\n",
            "forecast.csv line 3: 2026-03-01T11:00Z is not after the row before it",
        ),
        ("datetime,intensity\n2026-03-01T12:00Z\n", "forecast.csv line 2 has 1 columns; the header has 2"),
        ("datetime,intensity\n", "forecast.csv has a header but no rows"),
        ("", "forecast.csv is empty"),
    ],
    ids=["neither", "no-intensity", "time", "negative", "not-a-number", "order", "short-row", "no-rows", "empty"],
)
def test_a_bad_forecast_is_one_line_naming_file_and_row(tmp_path, text, message):
    with pytest.raises(UserError) as error:
        read_forecast(write(tmp_path, text))
    assert str(error.value).startswith(message) and "\n" not in str(error.value)


# -- planning -----------------------------------------------------------------------------------------------------


@pytest.mark.unit
def test_the_lowest_window_is_chosen_and_compared_with_now():
    plan = plan_start(forecast(400, 300, 100, 100, 250, 500), 2 * HOUR, NOW)
    assert plan.best.start == NOW + timedelta(hours=2) and plan.best.end == NOW + timedelta(hours=4)
    assert plan.best.g_per_kwh == 100
    assert (plan.earliest.start, plan.earliest.g_per_kwh) == (NOW, 350)
    assert plan.saved_g(0.5) == pytest.approx(0.5 * 250)


@pytest.mark.unit
def test_partial_intervals_weigh_by_the_time_they_cover():
    # 90 minutes: starting at 12:30 covers half an hour at 200 and an hour at 50 (mean 100); any other start more.
    plan = plan_start(forecast(200, 50, 300, 300), 1.5 * HOUR, NOW)
    assert plan.best.start == NOW + timedelta(minutes=30)
    assert plan.best.g_per_kwh == pytest.approx((0.5 * 200 + 50) / 1.5)
    assert plan.earliest.g_per_kwh == pytest.approx((200 + 0.5 * 50) / 1.5)


@pytest.mark.unit
def test_the_past_is_ignored_and_the_current_row_counts_from_now():
    rows = forecast(10, 10, 300, 200, 400, start=NOW - timedelta(hours=2))  # 10:00 to 15:00
    now = NOW + timedelta(minutes=30)  # half an hour into the row at 300; the rows at 10 are past
    plan = plan_start(rows, HOUR, now)
    assert plan.earliest.start == now and plan.earliest.g_per_kwh == pytest.approx(250)
    assert (plan.best.start, plan.best.g_per_kwh) == (NOW + timedelta(hours=1), 200)


@pytest.mark.unit
def test_a_forecast_that_begins_later_is_compared_with_its_first_time():
    plan = plan_start(forecast(300, 100, 300, start=NOW + timedelta(hours=5)), HOUR, NOW)
    assert plan.earliest.start == NOW + timedelta(hours=5) and plan.earliest.g_per_kwh == 300
    assert plan.best.start == NOW + timedelta(hours=6) and plan.best.g_per_kwh == 100


@pytest.mark.unit
def test_equal_windows_start_at_the_earliest():
    plan = plan_start(forecast(100, 100, 100, 100), HOUR, NOW + timedelta(minutes=7))
    assert plan.best.start == NOW + timedelta(minutes=7) and plan.saved_g(1.0) == 0


@pytest.mark.unit
def test_the_last_row_lasts_as_long_as_the_one_before_it():
    rows = forecast(300, 300, 50, step_min=30)  # the last row covers 13:00-13:30
    plan = plan_start(rows, 0.5 * HOUR, NOW)
    assert (plan.best.start, plan.best.end, plan.best.g_per_kwh) == (
        NOW + timedelta(hours=1),
        NOW + timedelta(hours=1.5),
        50,
    )


@pytest.mark.unit
@pytest.mark.parametrize(
    ("rows", "now", "covered"),
    [
        (forecast(300, 200, 100), NOW, 3 * HOUR),
        (forecast(300, 200, 100), NOW + timedelta(hours=2, minutes=30), 0.5 * HOUR),
        (forecast(300, 200, 100), NOW + timedelta(days=1), 0.0),  # all in the past
        (forecast(300), NOW, 0.0),  # one row covers no time
    ],
    ids=["too-short", "partly-past", "all-past", "one-row"],
)
def test_no_window_long_enough_says_what_the_forecast_covers(rows, now, covered):
    with pytest.raises(ForecastTooShort) as short:
        plan_start(rows, 4 * HOUR, now)
    assert short.value.covered_s == pytest.approx(covered) and short.value.duration_s == 4 * HOUR
    assert short.value.end == rows[-1].time + (rows[-1].time - rows[-2].time if len(rows) > 1 else timedelta(0))


def mean_by_hand(rows: list[ForecastRow], start: datetime, seconds: float) -> float:
    """The window's mean intensity from each row's overlap with it (rows last until the next; the last 30 min)."""
    ends = [row.time for row in rows[1:]] + [rows[-1].time + timedelta(minutes=30)]
    stop = start + timedelta(seconds=seconds)
    overlaps = [(min(end, stop) - max(row.time, start)).total_seconds() for row, end in zip(rows, ends, strict=True)]
    return sum(row.g_per_kwh * max(overlap, 0) for row, overlap in zip(rows, overlaps, strict=True)) / seconds


@pytest.mark.unit
def test_no_start_of_a_random_forecast_beats_the_chosen_one():
    generator = random.Random(7)
    for _ in range(50):
        rows = forecast(*(generator.randint(20, 600) for _ in range(12)), step_min=30)
        seconds = generator.choice([600, 1800, 2700, 5400, 7777])
        now = NOW + timedelta(seconds=generator.randint(0, 3000))
        plan = plan_start(rows, seconds, now)
        assert plan.best.g_per_kwh == pytest.approx(mean_by_hand(rows, plan.best.start, seconds))
        assert plan.best.start >= now and plan.best.end <= rows[-1].time + timedelta(minutes=30)
        latest = (rows[-1].time + timedelta(minutes=30) - now).total_seconds() - seconds
        for offset in range(0, int(latest) + 1, 10):  # every 10 seconds from now on
            assert plan.best.g_per_kwh <= mean_by_hand(rows, now + timedelta(seconds=offset), seconds) + 1e-9


# -- the command --------------------------------------------------------------------------------------------------


@pytest.mark.unit
def test_the_wait_says_the_time_left_and_ctrl_c_or_sigterm_cancels_it(monkeypatch):
    notes, sleeps = [], []

    class Report:
        def note(self, line):
            notes.append(line)

    start = datetime.now(timezone.utc) + timedelta(hours=1)
    clock = iter([start - timedelta(minutes=40), start - timedelta(minutes=25), start - timedelta(minutes=10), start])

    class Clock(datetime):
        @classmethod
        def now(cls, tz=None):
            return next(clock)

    monkeypatch.setattr(train_command, "datetime", Clock)
    monkeypatch.setattr(train_command.time, "sleep", sleeps.append)
    train_command._wait_until(start, Report())
    assert sleeps == [900.0, 900.0, 600.0]
    assert notes[0] == "waiting for the window: 40 min 0 s left; Ctrl-C cancels" and len(notes) == 3

    def interrupted(seconds):
        raise KeyboardInterrupt

    def terminated(seconds):
        os.kill(os.getpid(), signal.SIGTERM)

    monkeypatch.setattr(train_command, "datetime", datetime)
    before = signal.getsignal(signal.SIGTERM)
    for stop in (interrupted, terminated):
        monkeypatch.setattr(train_command.time, "sleep", stop)
        with pytest.raises(train_command.WaitCancelled):
            train_command._wait_until(start, Report())
    assert signal.getsignal(signal.SIGTERM) is before  # the handler of before the wait is back


@pytest.mark.unit
def test_refusals_come_before_anything_loads(toy_data, tmp_path, write_recipe, cli):
    recipe = write_recipe(classification_recipe(tmp_path / "no-model", toy_data, tmp_path / "runs" / "toy"))
    good = write(tmp_path, "datetime,intensity\n2026-03-01T12:00Z,300\n")

    resumed = cli("train", recipe, "--start-when", good, "--resume")
    assert resumed.exit_code == 2
    assert resumed.error_lines == [
        "error: --start-when plans a new run; a resumed run goes on at once: drop --start-when or --resume"
    ]
    bad = cli("train", recipe, "--start-when", write(tmp_path, "datetime,intensity\nsoon,1\n", "bad.csv"))
    assert bad.exit_code == 2 and bad.error_lines[0].startswith("error: bad.csv line 2: 'soon' is not an ISO 8601")
    missing = cli("train", recipe, "--start-when", tmp_path / "nope.csv")
    assert missing.exit_code == 2 and "nope.csv: cannot read it" in missing.error_lines[0]


@pytest.mark.unit
def test_ctrl_c_while_waiting_writes_nothing(monkeypatch, toy_data, tmp_path, write_recipe, cli):
    def waiting(*args, **kwargs):
        raise train_command.WaitCancelled

    monkeypatch.setattr(train_command, "train", waiting)
    recipe = write_recipe(classification_recipe(tmp_path / "no-model", toy_data, tmp_path / "runs" / "toy"))
    result = cli("train", recipe, "--start-when", write(tmp_path, "datetime,intensity\n2026-03-01T12:00Z,300\n"))
    assert result.exit_code == 130
    assert "cancelled while waiting for the window; nothing was trained or written" in result.stderr


def test_a_run_starts_in_its_window_and_records_it(tiny_bert, toy_data, tmp_path, write_recipe, cli):
    """The best window opens now; the run reuses its calibration; metrics.json and the card say where it started.
    A forecast that ends too soon for the same run is refused with what it covers and what the run needs."""
    now = datetime.now(timezone.utc).replace(microsecond=0)
    lines = [(now - timedelta(hours=1), 500), (now - timedelta(minutes=1), 120), (now + timedelta(hours=1), 300)]
    path = write(tmp_path, "datetime,carbon_intensity\n" + "".join(f"{t.isoformat()},{g}\n" for t, g in lines))
    run_dir = tmp_path / "runs" / "scheduled"
    recipe = write_recipe(classification_recipe(tiny_bert, toy_data, run_dir, epochs=1))

    result = cli("train", recipe, "--start-when", path)
    assert result.exit_code == 0, result.stderr
    assert "start: now, the lowest-intensity window of forecast.csv for the run's estimated" in result.stdout
    assert "120 g CO2eq/kWh vs 120 now; 0 g CO2eq saved at the forecast's intensities" in result.stdout
    metrics = json.loads((run_dir / "metrics.json").read_text())
    window = metrics["start_window"]
    assert window["forecast"] == "forecast.csv" and window["g_per_kwh"] == 120 and window["baseline"] == "now"
    assert window["saved_g"] == 0 and 0 < window["estimated_s"] < 3600
    assert "calibration" in metrics["estimate"]["phases"] and "tokenize" not in metrics["estimate"]["phases"]
    card = ModelCard.load(run_dir / "README.md").text
    assert "in the lowest-intensity window of forecast.csv: 120 g CO2eq/kWh vs 120 now" in card

    short = write(
        tmp_path, f"datetime,intensity\n{now.isoformat()},100\n{(now + timedelta(seconds=1)).isoformat()},90\n"
    )
    refused = cli("train", recipe, "--start-when", short, "--set", "output_dir=" + str(tmp_path / "runs" / "short"))
    assert refused.exit_code == 2
    assert refused.error_lines[0].startswith("error: forecast.csv covers at most 0.0 s from now (it ends ")
    assert "; the run is estimated at " in refused.error_lines[0]
    assert not (tmp_path / "runs" / "short").exists()
