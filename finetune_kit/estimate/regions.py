"""Where a run would emit least: its estimated kWh priced at the grid intensity of every region codecarbon has
figures for (countries, the sub-national regions it prices on their own, cloud regions), lowest first.

The intensities come from codecarbon's own calculator (`Emissions`, the class its trackers call) over its packaged
tables (`DataSource`'s getters), so each figure is what a run tracked in that region would record. codecarbon
documents no API for its tables: these are the public (not underscored) classes its trackers use, and no data file
is read here directly; an upgrade of codecarbon that moves them fails here first."""

from __future__ import annotations

import logging
import math
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from typing import Any

from codecarbon.core.emissions import Emissions
from codecarbon.core.units import Energy
from codecarbon.external.geography import CloudMetadata, GeoMetadata
from codecarbon.input import DataSource

from finetune_kit.config.recipe import EmissionsConfig

GRAMS_PER_KG = 1000.0
# The bidding zones codecarbon prices apart from their country, by the two letters that start their codes.
NORDIC_COUNTRIES = {"SE": "SWE", "NO": "NOR", "FI": "FIN"}


@dataclass(frozen=True)
class GridRegion:
    """One place a run could happen, and its grid intensity. `kind`: country, region (a state, province or bidding
    zone codecarbon prices on its own), cloud, or here (the recipe's own figure when no row of the table is it)."""

    kind: str
    name: str
    g_per_kwh: float
    country_iso_code: str | None = None
    region: str | None = None  # as a recipe's emissions.region names it; a cloud region's id
    provider: str | None = None  # cloud only

    @property
    def key(self) -> tuple[str | None, str | None]:
        return self.country_iso_code, self.region.lower() if self.region else None


@dataclass(frozen=True)
class Placement:
    """The run's kWh in every region, lowest intensity first; `ranked[current]` is where the recipe runs."""

    kwh: float
    ranked: list[GridRegion]
    current: int

    @property
    def here(self) -> GridRegion:
        return self.ranked[self.current]

    @property
    def best(self) -> GridRegion:
        return self.ranked[0]

    def grams(self, region: GridRegion) -> float:
        return self.kwh * region.g_per_kwh

    @property
    def best_cloud(self) -> GridRegion | None:
        """The lowest cloud region: often the move a job can make."""
        return next((r for r in self.ranked if r.kind == "cloud"), None)

    def factor(self, region: GridRegion) -> float:
        """How many times less `region` emits than here (inf where it emits nothing)."""
        return self.here.g_per_kwh / region.g_per_kwh if region.g_per_kwh else math.inf

    def to_dict(self) -> dict[str, Any]:
        rows = [
            {
                "rank": rank,
                **asdict(r),
                "g_per_kwh": _rounded(r.g_per_kwh),
                "co2_g": _rounded(self.grams(r)),
                "current": rank - 1 == self.current,
            }
            for rank, r in enumerate(self.ranked, start=1)
        ]
        cloud = self.best_cloud
        return {
            "kwh": _rounded(self.kwh),
            "current": rows[self.current],
            "best": rows[0],
            "factor": _factor(self.factor(self.best)),
            "best_cloud": rows[self.ranked.index(cloud)] if cloud else None,
            "cloud_factor": _factor(self.factor(cloud)) if cloud else None,
            "regions": rows,
        }


def grid_regions() -> list[GridRegion]:
    """Every region codecarbon has an intensity for, in its tables' order."""
    data, emissions = DataSource(), Emissions(DataSource())
    countries = data.get_global_energy_mix_data()

    def land(kind: str, name: str, country: str, region: str | None = None) -> GridRegion:
        kg = emissions.get_private_infra_emissions(Energy.from_energy(1.0), GeoMetadata(country, region=region))
        return GridRegion(kind, name, kg * GRAMS_PER_KG, country, region)

    def in_country(place: str, country: str) -> str:
        return f"{place}, {countries[country]['country_name']}"

    regions = [land("country", mix["country_name"], code) for code, mix in countries.items()]
    # The US table also holds its notes ("_unit", "_source") and the national figure ("usa"), which the country
    # row already gives from codecarbon's world table.
    states = [name for name in data.get_country_emissions_data("usa") if not name.startswith("_") and name != "usa"]
    regions += [land("region", in_country(_titled(name), "USA"), "USA", name) for name in states]
    provinces = data.get_country_energy_mix_data("can")
    regions += [land("region", in_country(_titled(name), "CAN"), "CAN", name) for name in provinces]
    for zone, figures in data.get_nordic_country_energy_mix_data()["data"].items():
        regions.append(land("region", figures["description"], NORDIC_COUNTRIES[zone[:2]], zone))
    for province in data.get_china_provincial_emissions_data()["data"].values():
        regions.append(land("region", in_country(province["description"], "CHN"), "CHN", province["names"][0]))
    for row in data.get_cloud_emissions_data().itertuples():
        kg = emissions.get_cloud_emissions(Energy.from_energy(1.0), CloudMetadata(row.provider, row.region))
        place = ", ".join(str(p) for p in (row.city, row.country_name) if isinstance(p, str))
        name = f"{row.provider} {row.region} ({place})"
        regions.append(GridRegion("cloud", name, kg * GRAMS_PER_KG, row.countryIsoCode, row.region, row.provider))
    return regions


def place(kwh: float, config: EmissionsConfig, regions: list[GridRegion] | None = None) -> Placement:
    """The run's `kwh` in every region, lowest first, with where the recipe runs marked: its row of the table when
    codecarbon prices the recipe's location as that row, else a row of its own (a forced intensity, the world
    average codecarbon falls back to without a known country, a region it does not know)."""
    regions = grid_regions() if regions is None else regions
    here = _here(regions, config)
    ranked = sorted(regions if here in regions else [*regions, here], key=lambda r: (r.g_per_kwh, r.name))
    return Placement(kwh, ranked, ranked.index(here))


def _here(regions: list[GridRegion], config: EmissionsConfig) -> GridRegion:
    country = config.country_iso_code.upper() if config.country_iso_code else None
    forced = config.carbon_intensity_g_per_kwh
    with _codecarbon_silent():  # the calibration has said already when codecarbon falls back to a wider figure
        kg = Emissions(DataSource(), force_carbon_intensity_g_co2e_kwh=forced).get_private_infra_emissions(
            Energy.from_energy(1.0), GeoMetadata(country, region=config.region)
        )
    intensity = kg * GRAMS_PER_KG
    by_key = {r.key: r for r in regions if r.kind != "cloud"}
    if forced is None and country:
        for key in ((country, config.region.lower() if config.region else None), (country, None)):
            if (row := by_key.get(key)) and math.isclose(row.g_per_kwh, intensity):
                return row
    where = ", ".join(p for p in (config.region, country) if p)
    if forced is not None:
        name = f"{where or 'here'} at emissions.carbon_intensity_g_per_kwh"
    elif (country, None) not in by_key:
        name = f"world average ({f'codecarbon has no figure for {country}' if country else 'no country set'})"
    else:
        name = where
    return GridRegion("here", name, intensity, country, config.region)


@contextmanager
def _codecarbon_silent() -> Iterator[None]:
    log = logging.getLogger("codecarbon")
    level = log.level
    log.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        log.setLevel(level)


def _titled(name: str) -> str:
    """Title case that keeps "and" and "of" small: Newfoundland and Labrador, District of Columbia."""
    return " ".join(word if word in ("and", "of") else word.capitalize() for word in name.split())


def _factor(value: float) -> float | None:
    """JSON has no infinity: None where the region emits nothing."""
    return None if math.isinf(value) else round(value, 3)


def _rounded(value: float) -> float:
    return float(f"{value:.4g}")
