"""De-identification to DICOM PS3.15 Annex E with keyed, consistent pseudonyms, UIDs and date shifts.

The names below load on first use, so that ``lake.deid.profile`` and ``lake.deid.policy`` (what the
command line needs to list options) import without pydicom and the ``deid`` rules.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from lake.lazy import lazy_exports

if TYPE_CHECKING:
    from lake.config import DeidSettings
    from lake.deid.engine import Deidentifier, DeidResult, PrivateRule
    from lake.deid.identity import PatientIdentifier
    from lake.deid.passthrough import PassThrough
    from lake.deid.policy import PixelPolicy
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


def build_deidentifier(
    key: LakeKey, settings: DeidSettings, recipe: Recipe | None = None, identifier: PatientIdentifier | None = None
) -> Deidentifier | PassThrough:
    """The de-identifier a lake's settings describe, with an optional site recipe on top.

    A ``pass-through`` lake (``settings.profile``) gets :class:`lake.deid.passthrough.PassThrough`,
    which takes no recipe (it changes nothing a recipe could make stricter).

    ``identifier`` resolves patients under the lake's identity setting and crosswalk
    (``lake.deid.identity.identifier_for``; default: PatientID alone, no crosswalk).
    Raises :class:`lake.errors.RecipeError` when the recipe would re-admit what the profile removes.
    """
    from lake.deid.engine import Deidentifier
    from lake.deid.private import load_safelist
    from lake.deid.profile import Profile, ProfileName

    if settings.profile == ProfileName.PASS_THROUGH:
        from lake.deid.passthrough import PassThrough, refuse_recipe

        if recipe is not None:
            refuse_recipe()
        return PassThrough(key, identifier)
    return Deidentifier(
        key,
        Profile(settings.options),
        date_offset_days=(int(settings.date_offset_days[0]), int(settings.date_offset_days[1])),
        private_safelist=load_safelist(),
        recipe=recipe,
        identifier=identifier,
    )


_EXPORTS = {
    "DEFAULT_RESEARCH_OPTIONS": "lake.deid.profile",
    "Action": "lake.deid.profile",
    "Profile": "lake.deid.profile",
    "ProfileOption": "lake.deid.profile",
    "DeidResult": "lake.deid.engine",
    "Deidentifier": "lake.deid.engine",
    "PrivateRule": "lake.deid.engine",
    "PixelPolicy": "lake.deid.policy",
    "Recipe": "lake.deid.recipe",
    "load_recipe": "lake.deid.recipe",
}


__getattr__ = lazy_exports(__name__, _EXPORTS)
