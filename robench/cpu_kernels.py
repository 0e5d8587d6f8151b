"""Python entry points of robench's C kernels (``robench/csrc/cpu_kernels.c``).

Each function takes CPU tensors (float32 images unless it says otherwise), allocates its output
and runs its kernel over rows, planes or images split among threads by
:func:`robench.native.parallel`; callers ask :func:`robench.native.takes` (or ``available``)
first, and use their torch paths where the kernels are off.

Each kernel equals its torch path bit for bit (tests compare them), except the blurs: motion blur and
Gaussian blur are direct sums here (the reference's computation) where the torch paths multiply
matrices or go through an FFT, and defocus sums its disk row by row (``_filters.disk_sums``) where
the torch path convolves with the whole kernel, so the two agree to float32 rounding.
"""

from __future__ import annotations

import torch

from robench import native, rng_fused

GAUSSIAN, SPECKLE, IMPULSE = 1, 2, 3  # noise kinds, as in cpu_kernels.c
BRIGHTNESS, SATURATE = 0, 1  # robench_hsv's kinds


def draw(seeds: torch.Tensor, first: int, columns: int, mode: int, *, streams: int, hashed: int, layout=None,
         table=None) -> torch.Tensor:
    """:func:`robench.rng_fused.draw`'s result on the CPU (same arguments and values; ``streams``
    is the number of streams side by side)."""
    batch = seeds.shape[0]
    out = torch.empty((batch, columns), dtype=torch.int32 if mode == rng_fused.BITS else torch.float32)
    if batch * columns == 0:
        return out
    seeds = seeds.contiguous()
    stream, counter = layout if layout is not None else (None, None)
    function = native.LIBRARY.load().robench_draw
    pointers = (stream.data_ptr() if stream is not None else None,
                counter.data_ptr() if counter is not None else None)

    def rows(begin: int, end: int) -> None:
        function(seeds.data_ptr(), begin, end, first, streams, *pointers, hashed, columns, mode,
                 table.data_ptr() if table is not None else None, out.data_ptr())

    native.parallel(rows, batch, batch * columns)
    return out


def _per_sample(parameter: float | torch.Tensor, batch: int) -> torch.Tensor:
    """A scalar or ``(B, 1, 1, 1)`` parameter as ``B`` float64 values."""
    if isinstance(parameter, torch.Tensor):
        return parameter.reshape(-1).to(torch.float64).expand(batch).contiguous()
    return torch.full((batch,), parameter, dtype=torch.float64)


def noise(kind: int, images: torch.Tensor, parameter: float | torch.Tensor, rng, table: torch.Tensor | None = None
          ) -> torch.Tensor:
    """A noise corruption's pixels with its draws hashed in place, as its torch path computes them
    from one ``rng.normal`` (``GAUSSIAN``: ``x + sigma * z``; ``SPECKLE``: ``x * (1 + sigma * z)``;
    both clamped, z from the normal ``table``) or one ``rng.bits`` (``IMPULSE``: 0 or 1 where the
    top 24 bits fall below the integer ``parameter``). ``parameter`` is a scalar or per sample."""
    images = images.contiguous()
    batch, size = images.shape[0], images[0].numel()
    if kind != IMPULSE:  # sigma as the float32 value the torch path multiplies by
        parameter = _float32(parameter)
    values, seeds, call = _per_sample(parameter, batch), rng.seeds.contiguous(), rng.open_streams(1)
    out = torch.empty_like(images)
    function = native.LIBRARY.load().robench_noise

    def rows(begin: int, end: int) -> None:
        function(kind, images.data_ptr(), seeds.data_ptr(), call, values.data_ptr(),
                 table.data_ptr() if table is not None else None, out.data_ptr(), begin, end, size)

    native.parallel(rows, batch, images.numel())
    return out


def poisson(rows: torch.Tensor, k: torch.Tensor, sampler) -> torch.Tensor:
    """``_PoissonInverse.__call__``'s counts on the CPU (flat int32 ``rows`` and ``k``)."""
    rows, k = rows.contiguous(), k.contiguous()
    out = torch.empty_like(k)
    function = native.LIBRARY.load().robench_poisson

    def elements(begin: int, end: int) -> None:
        function(rows.data_ptr(), k.data_ptr(), sampler.cpu_guide.data_ptr(), sampler.walk.data_ptr(),
                 sampler.width, out.data_ptr(), begin, end, sampler.CPU_GUIDE_BITS)

    native.parallel(elements, k.numel(), k.numel())
    return out


def shot_noise(images: torch.Tensor, first_row: torch.Tensor, photons: torch.Tensor, sampler, rng) -> torch.Tensor:
    """``ShotNoise.apply_mixed``'s pixels, hashing its one ``rng.bits`` draw in place: float32
    ``images`` ``(B, ...)``, each sample's first Poisson row and photon count (int64, ``B`` values),
    the ``_PoissonInverse`` whose tables to search. Raises ValueError for values outside [0, 1]."""
    images = images.contiguous()
    first_row, photons = first_row.reshape(-1).contiguous(), photons.reshape(-1).contiguous()
    seeds, call = rng.seeds.contiguous(), rng.open_streams(1)
    out = torch.empty_like(images)
    batch, size = images.shape[0], images[0].numel()
    function = native.LIBRARY.load().robench_shot_noise
    outside = []

    def rows(begin: int, end: int) -> None:
        outside.append(function(
            images.data_ptr(), seeds.data_ptr(), call, first_row.data_ptr(), photons.data_ptr(),
            sampler.cpu_guide.data_ptr(), sampler.walk.data_ptr(), sampler.width, out.data_ptr(),
            begin, end, size, sampler.CPU_GUIDE_BITS))

    native.parallel(rows, batch, images.numel())
    if sum(outside):
        raise ValueError(f"shot_noise takes images in [0, 1]; {sum(outside)} values were outside (or NaN)")
    return out


def pixelate(images: torch.Tensor, small: tuple[int, int], columns: tuple, rows: tuple,
             upscale: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
    """``Pixelate.apply``'s pixels on the CPU: float32 ``images`` ``(..., H, W)`` box-downscaled to
    ``small`` (height, width) and upscaled back. ``columns`` and ``rows`` are each pass's int32
    (first tap, end tap, fixed-point weight or None) per output pixel; ``upscale`` the int32 small
    row and column each output row and column copies."""
    images = images.contiguous()
    out = torch.empty_like(images)
    h, w = images.shape[-2:]
    planes = images.numel() // (h * w) if images.numel() else 0
    function = native.LIBRARY.load().robench_pixelate
    pointers = [t.data_ptr() if t is not None else None for t in (*columns, *rows, *upscale)]

    def part(begin: int, end: int) -> None:
        function(images.data_ptr(), out.data_ptr(), begin, end, h, w, *small, *pointers)

    if planes:
        native.parallel(part, planes, images.numel())
    return out


def zoom_total(images: torch.Tensor, geometry: torch.Tensor, scales: torch.Tensor, divisor: float = 0.0) -> torch.Tensor:
    """``zoom_total``'s sum on the CPU: float32 ``images`` ``(..., H, W)`` plus each zoom's bilinear
    resample of its crop; ``geometry`` int32 ``(K, 7)``: crop top, left, height, width, the output
    offsets of the cut and whether torch rounds that resize as its channels-last kernel; ``scales``
    float32 ``(K, 2)``: torch's align-corners source scales. A positive ``divisor``: the sum divided
    by it and clamped to [0, 1] (ZoomBlur's mean)."""
    images = images.contiguous()
    out = torch.empty_like(images)
    h, w = images.shape[-2:]
    planes = images.numel() // (h * w) if images.numel() else 0
    function = native.LIBRARY.load().robench_zoom_total
    geometry, scales = geometry.contiguous(), scales.contiguous()

    def part(begin: int, end: int) -> None:
        function(images.data_ptr(), out.data_ptr(), begin, end, h, w, geometry.shape[0], geometry.data_ptr(),
                 scales.data_ptr(), divisor)

    if planes:
        native.parallel(part, planes, images.numel() * (geometry.shape[0] + 1))
    return out


def jpeg(images: torch.Tensor, luma: torch.Tensor, chroma: torch.Tensor, which: torch.Tensor | None) -> torch.Tensor:
    """``jpeg_roundtrip``'s pixels on the CPU: float32 ``(B, 3, H, W)`` images, the int32 ``(Q, 64)``
    luma and chroma quantisation tables of each quality, and each image's quality index (int64
    ``(B,)``; None: the first)."""
    images = images.contiguous()
    out = torch.empty_like(images)
    batch, (h, w) = images.shape[0], images.shape[-2:]
    which = which.contiguous() if which is not None else None
    function = native.LIBRARY.load().robench_jpeg

    def part(begin: int, end: int) -> None:
        function(images.data_ptr(), out.data_ptr(), begin, end, h, w, luma.data_ptr(), chroma.data_ptr(),
                 which.data_ptr() if which is not None else None)

    if batch and h and w:
        native.parallel(part, batch, images.numel())
    return out



def _float32(parameter: float | torch.Tensor) -> float | torch.Tensor:
    """A parameter as the float32 value(s) torch's float32 arithmetic would use."""
    if isinstance(parameter, torch.Tensor):
        return parameter.to(torch.float32)
    return float(torch.tensor(parameter, dtype=torch.float32))


def _per_sample_float32(parameter: float | torch.Tensor, batch: int) -> torch.Tensor:
    """A scalar or per-sample parameter as the ``B`` float32 values torch's float32 arithmetic uses."""
    return _per_sample(_float32(parameter), batch).to(torch.float32)


def hsv(kind: int, images: torch.Tensor, first: float | torch.Tensor, second: float | torch.Tensor = 0.0
        ) -> torch.Tensor:
    """Brightness (HSV value + ``first``) or Saturate (saturation * ``first`` + ``second``) of
    float32 ``(B, 3, H, W)`` images, as their torch paths compute them; scalars or per sample."""
    if images.dim() != 4 or images.shape[1] != 3:
        raise ValueError(f"HSV conversions take (B, 3, H, W) images, got {tuple(images.shape)}")
    images = images.contiguous()
    out = torch.empty_like(images)
    batch, plane = images.shape[0], images[0, 0].numel()
    first, second = _per_sample(_float32(first), batch), _per_sample(_float32(second), batch)
    function = native.LIBRARY.load().robench_hsv

    def part(begin: int, end: int) -> None:
        function(kind, images.data_ptr(), out.data_ptr(), first.data_ptr(), second.data_ptr(), begin, end, plane)

    native.parallel(part, batch, images.numel())
    return out


def contrast(images: torch.Tensor, mean: torch.Tensor, factor: float | torch.Tensor) -> torch.Tensor:
    """``Contrast.distort``'s blend of float32 ``(B, C, H, W)`` images with their per-plane ``mean``
    (``(B, C, 1, 1)``, from torch) and the factor (a scalar or per sample)."""
    images, mean = images.contiguous(), mean.contiguous()
    out = torch.empty_like(images)
    batch, channels, plane = images.shape[0], images.shape[1], images[0, 0].numel()
    factor = _per_sample(_float32(factor), batch)
    function = native.LIBRARY.load().robench_contrast

    def part(begin: int, end: int) -> None:
        function(images.data_ptr(), out.data_ptr(), mean.data_ptr(), factor.data_ptr(), begin, end, channels, plane)

    if images.numel():
        native.parallel(part, batch, images.numel())
    return out


def plasma_maps(seeds: torch.Tensor, first: int, decays: torch.Tensor, mapsize: int, height: int, width: int
                ) -> torch.Tensor:
    """``_fractal.plasma_fractals``'s maps on the CPU, their draws hashed in place: float64 ``decays``
    ``(B, maps)`` (each map's wibble decay), the first of the streams the torch path's one
    ``uniform_streams`` call opens; float32 ``(B, maps, height, width)``, the maps' top-left corner."""
    decays = decays.to(torch.float64).contiguous()
    batch, maps = decays.shape
    seeds = seeds.contiguous()
    out = torch.empty(batch, maps, height, width)
    function = native.LIBRARY.load().robench_plasma_maps

    def part(begin: int, end: int) -> None:
        function(seeds.data_ptr(), first, maps, decays.data_ptr(), begin, end, mapsize, height, width, out.data_ptr())

    if out.numel():
        native.parallel(part, batch * maps, batch * maps * mapsize * mapsize)
    return out


def fog(images: torch.Tensor, plasma: torch.Tensor, strength: float | torch.Tensor) -> torch.Tensor:
    """``Fog._fog``'s blend of float32 ``(B, C, H, W)`` images with their plasma maps (``(B, 1, H, W)``)
    at a strength (a scalar or per sample)."""
    images, plasma = images.contiguous(), plasma.contiguous()
    out = torch.empty_like(images)
    batch, channels, plane = images.shape[0], images.shape[1], images[0, 0].numel()
    strength = _per_sample_float32(strength, batch)
    function = native.LIBRARY.load().robench_fog

    def part(begin: int, end: int) -> None:
        function(images.data_ptr(), plasma.data_ptr(), strength.data_ptr(), out.data_ptr(), begin, end, channels,
                 plane)

    if images.numel():
        native.parallel(part, batch, images.numel())
    return out


def motion_blur(images: torch.Tensor, weights: torch.Tensor, dy: torch.Tensor, dx: torch.Tensor,
                clamp: bool = False) -> torch.Tensor:
    """``blur.motion_blur`` on the CPU as the reference computes it: for float32 ``(B, C, H, W)``
    images, each image's float64 weights ``(B, K)`` (zero where a tap is not used) and int64 row and
    column offsets ``(B, K)``, the float64 sum over taps of weight times the image shifted by the
    offsets with edges replicated, rounded to float32 (not the torch path's FFT: values agree to
    float32 rounding, not bit for bit); clamped to [0, 1] as each row is written if ``clamp``."""
    images = images.contiguous()
    weights, dy, dx = (t.contiguous() for t in (weights.to(torch.float64), dy.to(torch.int64), dx.to(torch.int64)))
    out = torch.empty_like(images)
    b, c, h, w = images.shape
    function = native.LIBRARY.load().robench_motion_blur

    def planes(begin: int, end: int) -> None:
        function(images.data_ptr(), out.data_ptr(), weights.data_ptr(), dy.data_ptr(), dx.data_ptr(), begin, end, c,
                 h, w, weights.shape[1], clamp)

    if images.numel():
        native.parallel(planes, b * c, images.numel() * weights.shape[1])
    return out


def elastic_grid(field: torch.Tensor, alpha: torch.Tensor) -> torch.Tensor:
    """``ElasticTransform``'s sampling grid from float32 fields ``(B, 2, H, W)`` (the column, then the
    row displacement) times each image's ``alpha`` (``B`` values): ``(B, H, W, 2)`` (x, y) for
    ``grid_sample`` without corners aligned, the values ``digital._sample`` computes."""
    field = field.contiguous()
    alpha = alpha.reshape(-1).to(torch.float32).contiguous()
    b, _, h, w = field.shape
    grid = torch.empty(b, h, w, 2, dtype=torch.float32)
    function = native.LIBRARY.load().robench_elastic_grid

    def images(begin: int, end: int) -> None:
        function(field.data_ptr(), alpha.data_ptr(), grid.data_ptr(), begin, end, h, w)

    if grid.numel():
        native.parallel(images, b, grid.numel())
    return grid


def glass_copies(images: torch.Tensor, scan: torch.Tensor, shift: int, iterations: torch.Tensor, seeds: torch.Tensor,
                 first: int) -> torch.Tensor:
    """``_glass.local_copies`` on the CPU as the reference runs it: float32 ``(B, C, H, W)`` images
    each scanned ``iterations[b]`` times (int64), scan ``i`` drawing from stream ``first + i`` of
    the sample ``seeds``; ``scan``: each pixel's index in robench's draw order (int32 ``(H * W,)``,
    -1 outside the scanned region). Each scanned pixel copies the neighbour its draws pick, one
    after the other, in a copy of the images."""
    out = images.contiguous().clone()
    b, c, h, w = out.shape
    seeds, iterations, scan = seeds.contiguous(), iterations.to(torch.int64).contiguous(), scan.contiguous()
    function = native.LIBRARY.load().robench_glass_copies

    def batch(begin: int, end: int) -> None:
        function(out.data_ptr(), seeds.data_ptr(), first, scan.data_ptr(), iterations.data_ptr(), begin, end, c, h,
                 w, shift)

    native.parallel(batch, b, out.numel() * max(1, int(iterations.max())))
    return out


def gaussian_blur(images: torch.Tensor, taps: torch.Tensor, radius: torch.Tensor, which: torch.Tensor | None,
                  row_source: torch.Tensor, col_source: torch.Tensor, clamp: bool = False,
                  levels: bool = False) -> torch.Tensor:
    """``_filters.gaussian_blur_each`` on the CPU as a direct separable sum: float32 or float64
    images ``(B, ..., H, W)``; each choice's half-kernels (``(S, 2, R + 1)`` of the images' dtype:
    vertical, horizontal; centre tap first) and radii (int64 ``(S, 2)``); each image's choice
    (int64 ``(B,)``; None: the first); the source row and column (int64) of each position of the
    image padded by R; with ``clamp``, the result clamped to [0, 1] as it is written; with ``levels``,
    made uint8 levels / 255 as it is written (``floor(x * 255)`` clamped to [0, 255], / 255)."""
    images = images.contiguous()
    out = torch.empty_like(images)
    h, w = images.shape[-2:]
    if not images.numel():
        return out
    planes = images[0].numel() // (h * w)
    which = which.to(torch.int64).contiguous() if which is not None else None
    taps, radius = taps.contiguous(), radius.contiguous()
    library = native.LIBRARY.load()
    function = library.robench_gaussian_blur_f64 if images.dtype == torch.float64 else library.robench_gaussian_blur

    def part(begin: int, end: int) -> None:
        function(images.data_ptr(), out.data_ptr(), taps.data_ptr(), radius.data_ptr(),
                 which.data_ptr() if which is not None else None, row_source.data_ptr(), col_source.data_ptr(),
                 taps.shape[-1] - 1, begin, end, planes, h, w, 2 if levels else int(clamp))

    native.parallel(part, images.numel() // (h * w), images.numel() * taps.shape[-1])
    return out


def defocus(images: torch.Tensor, sums, row_source: torch.Tensor, col_source: torch.Tensor) -> torch.Tensor:
    """``blur.DefocusBlur`` on float32 ``(B, ..., H, W)`` images: the defocus kernel as factored by
    ``_filters.disk_sums`` (``sums``), summed in float32, clamped to [0, 1]; borders by the source
    row and column (int64) of each position of the image padded by ``sums.pad``."""
    images = images.contiguous()
    out = torch.empty_like(images)
    h, w = images.shape[-2:]
    reach = (sums.half.numel() - 1) // 2
    function = native.LIBRARY.load().robench_defocus

    def part(begin: int, end: int) -> None:
        function(images.data_ptr(), out.data_ptr(), row_source.data_ptr(), col_source.data_ptr(), sums.pad,
                 sums.gauss.data_ptr(), sums.gauss.numel() // 2, sums.half.data_ptr(), reach, sums.scale,
                 sums.weights.data_ptr(), sums.dy.data_ptr(), sums.dx.data_ptr(), sums.weights.numel(), begin, end,
                 h, w)

    if images.numel():
        native.parallel(part, images.numel() // (h * w), images.numel() * (4 * reach + 8 + sums.weights.numel()))
    return out


def frost(images: torch.Tensor, maps: torch.Tensor, mean: torch.Tensor, spread: torch.Tensor, brightness: torch.Tensor,
          contrast: torch.Tensor, ridge_weight: torch.Tensor, tint: tuple[float, float, float],
          image_weight: float | torch.Tensor, frost_weight: float | torch.Tensor) -> torch.Tensor:
    """``Frost._frost`` on float32 ``(B, 3, H, W)`` images from ``weather._frost_parts`` (the two
    plasma maps ``(B, 2, H, W)`` and per-sample float32 values), the texture's RGB tint, and the
    image and frost weights (scalars or per sample)."""
    images, maps = images.contiguous(), maps.contiguous()
    out = torch.empty_like(images)
    batch, plane = images.shape[0], images[0, 0].numel()
    values = [_per_sample_float32(value, batch)
              for value in (mean, spread, brightness, contrast, ridge_weight, image_weight, frost_weight)]
    tint = torch.tensor(tint, dtype=torch.float32)
    function = native.LIBRARY.load().robench_frost

    def part(begin: int, end: int) -> None:
        function(images.data_ptr(), out.data_ptr(), maps.data_ptr(), *(v.data_ptr() for v in values),
                 tint.data_ptr(), begin, end, plane)

    if images.numel():
        native.parallel(part, batch, images.numel())
    return out


def snow(images: torch.Tensor, layer: torch.Tensor, image_weight: torch.Tensor, lift_weight: torch.Tensor
         ) -> torch.Tensor:
    """``Snow.apply_mixed``'s last steps on float32 ``(B, 3, H, W)`` images: the lift, the blend with
    per-sample weights (``(B, 1, 1, 1)``) and the snow layer ``(B, 1, H, W)`` added as it is and
    turned by 180 degrees, clamped."""
    images, layer = images.contiguous(), layer.contiguous()
    out = torch.empty_like(images)
    batch, (h, w) = images.shape[0], images.shape[-2:]
    weights = [_per_sample_float32(weight, batch) for weight in (image_weight, lift_weight)]
    function = native.LIBRARY.load().robench_snow

    def part(begin: int, end: int) -> None:
        function(images.data_ptr(), layer.data_ptr(), *(t.data_ptr() for t in weights), out.data_ptr(), begin, end,
                 h, w)

    if images.numel():
        native.parallel(part, batch, images.numel())
    return out


def affine_f64(x: torch.Tensor, scale: float | torch.Tensor, loc: float | torch.Tensor) -> torch.Tensor:
    """``x * scale + loc`` in float64 for float32 ``x`` ``(B, ...)`` on the CPU, ``scale`` and ``loc``
    scalars or per sample: torch's promoted product then sum, in one pass."""
    x = x.contiguous()
    out = torch.empty(x.shape, dtype=torch.float64)
    batch = x.shape[0]
    factor, offset = _per_sample(scale, batch), _per_sample(loc, batch)
    plane = x[0].numel() if batch else 0
    function = native.LIBRARY.load().robench_affine_f64

    def part(begin: int, end: int) -> None:
        function(x.data_ptr(), out.data_ptr(), factor.data_ptr(), offset.data_ptr(), begin, end, plane)

    if x.numel():
        native.parallel(part, batch, x.numel() * 3)
    return out


def chamfer_distance(edges: torch.Tensor) -> torch.Tensor:
    """The water kernel's distance step alone: cv2.distanceTransform(non-edges, DIST_L2, 5)
    truncated at 20, float32, for bool edge masks ``(B, 1, H, W)`` (tests compare it with OpenCV;
    :func:`spatter_water` runs it inside its loop)."""
    edges = edges.contiguous().to(torch.uint8)
    out = torch.empty(edges.shape, dtype=torch.float32)
    batch, (h, w) = edges.shape[0], edges.shape[-2:]
    function = native.LIBRARY.load().robench_chamfer_distance
    if edges.numel():
        function(edges.data_ptr(), out.data_ptr(), 0, batch, h, w)
    return out


def spatter_water(images: torch.Tensor, layer: torch.Tensor, threshold: float | torch.Tensor,
                  intensity: float | torch.Tensor, colour: tuple[float, float, float]) -> torch.Tensor:
    """``_spatter._water`` on the CPU: float32 ``(B, 3, H, W)`` images, each one's float64 field
    ``(B, 1, H, W)``, the threshold below which it counts 0 and the intensity (each a scalar or per
    sample) and the RGB colour: the uint8 levels, Canny, the truncated chamfer distance (OpenCV's
    two raster passes, where the torch path takes the minimum over row offsets: the same float32
    values), blur, histogram equalisation, emboss, blur and the blend, as its torch path computes
    them."""
    images, layer = images.contiguous(), layer.contiguous()
    out = torch.empty_like(images)
    batch, (h, w) = images.shape[0], images.shape[-2:]
    cut, strength = _per_sample(threshold, batch), _per_sample_float32(intensity, batch)
    tint = torch.tensor(colour, dtype=torch.float32)
    function = native.LIBRARY.load().robench_spatter_water

    def part(begin: int, end: int) -> None:
        function(layer.data_ptr(), images.data_ptr(), out.data_ptr(), cut.data_ptr(), strength.data_ptr(),
                 tint.data_ptr(), begin, end, h, w)

    if images.numel():
        native.parallel(part, batch, layer.numel() * 41)
    return out
