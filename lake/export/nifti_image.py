"""A :class:`~lake.pixels.volume.Volume` as a NIfTI-1 image laid out as dcm2niix writes it.

Voxel order: ``i`` the DICOM columns, ``j`` the DICOM rows bottom to top (dcm2niix flips rows so
that a radiological axial image reads as in a viewer), ``k`` the slices along
``cross(row direction, column direction)``, then time. The affine is the volume's (LPS) turned
to RAS (first two rows negated), written as sform and qform with code 1 (scanner). Stored values
are kept with the modality LUT as ``scl_slope``/``scl_inter`` when every slice shares one rescale;
otherwise the values are written as float32 after each slice's own rescale.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from lake.pixels.volume import Volume

if TYPE_CHECKING:
    import nibabel as nib

LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0, 1.0])


def ras_affine(vol: Volume) -> np.ndarray:
    """The 4x4 affine of the written image: voxel ``(i, j, k)`` (j flipped rows) to RAS mm."""
    rows = vol.array.shape[-2]
    ijk = vol.affine[:, [2, 1, 0, 3]].copy()  # (column, row, slice) to LPS
    ijk[:3, 3] += ijk[:3, 1] * (rows - 1)  # j counts rows from the last one
    ijk[:3, 1] *= -1
    return LPS_TO_RAS @ ijk


def voxels(vol: Volume) -> tuple[np.ndarray, float | None, float | None]:
    """(data in (i, j, k[, t]) order, scl_slope, scl_inter): stored values with one shared rescale,
    else float32 modality values with no scaling."""
    slopes, intercepts = np.unique(vol.slopes), np.unique(vol.intercepts)
    if len(slopes) == 1 and len(intercepts) == 1:
        data, slope, inter = vol.array, float(slopes[0]), float(intercepts[0])
    else:
        data, slope, inter = vol.hu(), None, None
    data = data[..., ::-1, :]  # rows bottom to top
    axes = (3, 2, 1, 0) if data.ndim == 4 else (2, 1, 0)
    # (t, z, y, x) -> (x, y, z, t)
    return np.ascontiguousarray(np.transpose(data, axes)), slope, inter


def to_nifti(vol: Volume) -> nib.Nifti1Image:
    """The volume as a NIfTI-1 image (see the module docstring)."""
    import nibabel as nib

    data, slope, inter = voxels(vol)
    if data.dtype == np.uint16 and (data.size == 0 or int(data.max()) <= np.iinfo(np.int16).max):
        data = data.astype(np.int16)  # as dcm2niix: int16 whenever the values fit
    affine = ras_affine(vol)
    image = nib.Nifti1Image(data, affine)
    header = image.header
    header.set_xyzt_units("mm", "sec")
    if vol.array.ndim == 4:
        zooms = list(header.get_zooms())
        zooms[3] = vol.temporal_spacing or 1.0
        header.set_zooms(tuple(zooms))
    image.set_sform(affine, code=1)
    image.set_qform(affine, code=1)
    if slope is not None and inter is not None:
        header.set_slope_inter(slope, inter)
    return image
