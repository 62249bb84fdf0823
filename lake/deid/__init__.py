"""De-identification to DICOM PS3.15 Annex E with keyed, consistent pseudonyms, UIDs and date shifts."""

from __future__ import annotations

from lake.config import DeidSettings
from lake.deid.engine import Deidentifier, DeidResult, PrivateRule
from lake.deid.pixels import PixelPolicy
from lake.deid.private import load_safelist
from lake.deid.profile import DEFAULT_RESEARCH_OPTIONS, Action, Profile, ProfileOption
from lake.deid.recipe import Recipe, load_recipe
from lake.keys import LakeKey

__all__ = [
    "DEFAULT_RESEARCH_OPTIONS",
    "Action",
    "DeidResult",
    "Deidentifier",
    "PixelPolicy",
    "PrivateRule",
    "Profile",
    "ProfileOption",
    "Recipe",
    "build_deidentifier",
    "load_recipe",
]


def build_deidentifier(key: LakeKey, settings: DeidSettings, recipe: Recipe | None = None) -> Deidentifier:
    """The de-identifier a lake's settings describe, with an optional site recipe on top.

    Raises :class:`lake.errors.RecipeError` when the recipe would re-admit what the profile removes.
    """
    return Deidentifier(
        key,
        Profile(settings.options),
        date_offset_days=(int(settings.date_offset_days[0]), int(settings.date_offset_days[1])),
        private_safelist=load_safelist(),
        recipe=recipe,
    )
