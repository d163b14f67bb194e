"""`estimate --where`: the run's grams in every grid region codecarbon knows, lowest first, each region's intensity
codecarbon's own, where the recipe runs marked with what moving to the lowest would save."""

from __future__ import annotations

import io
import json
import time

import pytest
from codecarbon import OfflineEmissionsTracker
from codecarbon.input import DataSource
from rich.console import Console

from finetune_kit.commands.estimate_report import WHERE_ROWS, placement_line, placement_table
from finetune_kit.config.recipe import EmissionsConfig
from finetune_kit.costs.prediction import Estimate, FinishSeconds, Phase
from finetune_kit.emissions import EmissionsRecord
from finetune_kit.estimate.regions import GridRegion, grid_regions, place
from tests.builders import classification_recipe

pytestmark = pytest.mark.unit

KWH = 0.002
LBS_PER_MWH_IN_G_PER_KWH = 0.45359237


@pytest.fixture(scope="module")
def regions() -> list[GridRegion]:
    return grid_regions()


def find(regions: list[GridRegion], kind: str, country: str | None, region: str | None = None) -> GridRegion:
    return next(r for r in regions if (r.kind, r.country_iso_code, r.region) == (kind, country, region))


def test_every_country_sub_national_region_and_cloud_region_with_codecarbons_figure(regions):
    data = DataSource()
    kinds = {kind: [r for r in regions if r.kind == kind] for kind in ("country", "region", "cloud")}
    assert len(kinds["country"]) == len(data.get_global_energy_mix_data()) > 200
    assert len(kinds["cloud"]) == len(data.get_cloud_emissions_data()) > 30
    states = {r.country_iso_code for r in kinds["region"]}
    assert states == {"USA", "CAN", "SWE", "NOR", "FIN", "CHN"} and len(kinds["region"]) > 100

    france = find(regions, "country", "FRA")
    assert france.name == "France"
    assert france.g_per_kwh == pytest.approx(data.get_global_energy_mix_data()["FRA"]["carbon_intensity"])
    california = find(regions, "region", "USA", "california")
    lbs = data.get_country_emissions_data("usa")["california"]["emissions"]
    assert california.name == "California, United States"
    assert california.g_per_kwh == pytest.approx(lbs * LBS_PER_MWH_IN_G_PER_KWH)
    zone = data.get_nordic_country_energy_mix_data()["data"]["SE1"]
    assert find(regions, "region", "SWE", "SE1").g_per_kwh == zone["emission_factor"]
    paris = find(regions, "cloud", "FRA", "europe-west9")
    assert paris.provider == "gcp" and paris.name == "gcp europe-west9 (Paris, France)" and paris.g_per_kwh == 34
    assert not [r for r in regions if r.region in ("usa", "_unit", "_source")]  # the US table's notes and total


def test_a_tracked_run_in_a_region_records_the_tables_intensity(regions):
    """What codecarbon's tracker applies for a state is the table's figure for it."""
    tracker = OfflineEmissionsTracker(
        country_iso_code="USA", region="oregon", force_cpu_power=50, save_to_file=False, log_level="error"
    )
    tracker.start()
    time.sleep(1.0)
    tracker.stop()
    data = tracker.final_emissions_data
    assert data.emissions * 1000 / data.energy_consumed == pytest.approx(
        find(regions, "region", "USA", "oregon").g_per_kwh
    )


def test_the_recipes_place_is_marked_and_ranked_among_all(regions):
    placement = place(KWH, EmissionsConfig(country_iso_code="FRA"), regions)
    assert placement.here == find(regions, "country", "FRA")
    assert len(placement.ranked) == len(regions)
    intensities = [r.g_per_kwh for r in placement.ranked]
    assert intensities == sorted(intensities)
    cloud = placement.best_cloud
    assert cloud == min((r for r in regions if r.kind == "cloud"), key=lambda r: r.g_per_kwh)
    assert placement.factor(cloud) == pytest.approx(placement.here.g_per_kwh / cloud.g_per_kwh)
    assert placement.grams(placement.here) == pytest.approx(KWH * placement.here.g_per_kwh)

    # A state by the recipe's spelling; a region codecarbon does not know falls back to its country, as a run does.
    assert place(KWH, EmissionsConfig(country_iso_code="usa", region="California"), regions).here.name == (
        "California, United States"
    )
    assert place(KWH, EmissionsConfig(country_iso_code="USA", region="atlantis"), regions).here.name == "United States"


@pytest.mark.parametrize(
    ("config", "name", "intensity"),
    [
        (EmissionsConfig(), "world average (no country set)", 475),
        (EmissionsConfig(country_iso_code="XYZ"), "world average (codecarbon has no figure for XYZ)", 475),
        (
            EmissionsConfig(country_iso_code="FRA", carbon_intensity_g_per_kwh=3),
            "FRA at emissions.carbon_intensity_g_per_kwh",
            3,
        ),
    ],
)
def test_a_figure_no_region_has_is_a_row_of_its_own(regions, config, name, intensity):
    placement = place(KWH, config, regions)
    assert (placement.here.kind, placement.here.name) == ("here", name)
    assert placement.here.g_per_kwh == pytest.approx(intensity)
    assert len(placement.ranked) == len(regions) + 1
    assert (
        placement.ranked[placement.current - 1].g_per_kwh
        <= intensity
        <= placement.ranked[placement.current + 1].g_per_kwh
    )


def render(table) -> str:
    console = Console(width=200, record=True, file=io.StringIO())
    console.print(table)
    return console.export_text()


def test_the_table_shows_the_lowest_and_the_current_one_below_them(regions):
    placement = place(KWH, EmissionsConfig(country_iso_code="DEU"), regions)
    assert placement.current > WHERE_ROWS
    text = render(placement_table(placement))
    lines = [line for line in text.splitlines() if line.startswith("│")]
    assert len(lines) == WHERE_ROWS + 1
    assert f"│ {placement.current + 1} │ Germany  ← here" in lines[-1]
    assert placement.best.name in lines[0]
    assert len([line for line in render(placement_table(placement, every=True)).splitlines() if "│" in line]) > 300

    line = placement_line(placement)
    assert line.startswith(f"here: Germany, {placement.here.g_per_kwh:.0f} g CO2eq/kWh")
    assert f"(#{placement.current + 1} of {len(regions)})" in line
    assert f"lowest cloud region: {placement.best_cloud.name}" in line and line.endswith("x less")
    france, germany = find(regions, "country", "FRA"), find(regions, "country", "DEU")
    assert placement_line(place(KWH, EmissionsConfig(country_iso_code="FRA"), [france, germany])) == (
        "here: France, 56 g CO2eq/kWh, 0.112 g (#1 of 2): the lowest there is"
    )
    factor = germany.g_per_kwh / france.g_per_kwh
    assert placement_line(place(KWH, EmissionsConfig(country_iso_code="DEU"), [france, germany])) == (
        f"here: Germany, {germany.g_per_kwh:.0f} g CO2eq/kWh, {KWH * germany.g_per_kwh:.3g} g (#2 of 2); "
        f"lowest: France (FRA), 56 g/kWh, 0.112 g: {factor:.1f}x less"
    )


def test_estimate_where_prints_the_table_and_json(monkeypatch, toy_data, tmp_path, write_recipe, cli):
    """The CLI's side only: the estimate itself is the calibration's (tests/test_estimate.py)."""
    import finetune_kit.estimate.budget as budget
    import finetune_kit.training as training

    estimate = Estimate([Phase("train", "10 steps", 60.0, KWH, KWH * 56)], (0.9, 1.1), FinishSeconds(1, 1, 1, 1))
    spent = EmissionsRecord(0.01, 1e-5, 2.0, "CPU", "", "France", "FRA", None, 2, 0, "3")
    monkeypatch.setattr(training, "prepare", lambda recipe: recipe)
    monkeypatch.setattr(budget, "estimate_run", lambda prepared, steps, progress: (estimate, spent))
    recipe = classification_recipe(tmp_path / "model", toy_data, tmp_path / "runs" / "toy")
    recipe["emissions"] = {"country_iso_code": "USA", "region": "Texas"}
    path = write_recipe(recipe)

    shown = cli("estimate", path, "--where")
    assert shown.exit_code == 0, shown.stderr
    assert "where: the run's 0.002 kWh in" in shown.stdout and "Texas, United States  ← here" in shown.stdout
    assert "here: Texas, United States, 350 g CO2eq/kWh, 0.7 g" in shown.stdout

    as_json = cli("estimate", path, "--where", "--json")
    assert as_json.exit_code == 0, as_json.stderr
    where = json.loads(as_json.stdout)["where"]
    assert where["current"]["name"] == "Texas, United States" and where["current"]["current"] is True
    assert [r["rank"] for r in where["regions"]] == list(range(1, len(where["regions"]) + 1))
    assert where["regions"][0] == where["best"] and len(where["regions"]) > 300
    assert where["current"]["co2_g"] == pytest.approx(KWH * where["current"]["g_per_kwh"], rel=1e-3)
