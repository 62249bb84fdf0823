from __future__ import annotations

import matplotlib
import numpy as np

from lake.pixels.volume import FrameRef, Volume, plan, volume_from

matplotlib.use("Agg")  # lake.viz never needs pyplot; this only keeps any stray backend headless

AXIAL = (1.0, 0.0, 0.0, 0.0, 1.0, 0.0)


def make_volume(
    along: list[float],
    *,
    orientation: tuple[float, ...] = AXIAL,
    corner: tuple[float, float, float] = (-10.0, -20.0, 0.0),
    pixel_spacing: tuple[float, float] = (0.5, 0.5),
    shape: tuple[int, int] = (6, 5),
    slope: float = 1.0,
    intercept: float = -1024.0,
    window: tuple[float, float] | None = None,
) -> Volume:
    """A volume whose slices lie at ``along`` mm on the slice normal from ``corner``.

    Slice ``k`` (in the order given) holds ``100 * k`` plus a ramp, so a picture shows which slice
    it is; frames are listed in reverse so slice order must come from the positions.
    """
    o = np.asarray(orientation, dtype=float)
    normal = np.cross(o[:3], o[3:])
    refs = [
        FrameRef(
            "s/a",
            k,
            tuple(float(c) for c in np.asarray(corner) + a * normal),  # type: ignore[arg-type]
            orientation,
            pixel_spacing,
            slope=slope,
            intercept=intercept,
            window=window,
            order=(len(along) - k, 0),
        )
        for k, a in enumerate(along)
    ]
    layout = plan(refs[::-1])
    ramp = np.arange(shape[0] * shape[1], dtype=np.int16).reshape(shape)
    array = np.stack([(100 * f.index + ramp).astype(np.int16) for f in layout.frames])
    return volume_from(layout, array)
