"""spatter's water steps as fused GPU kernels (Triton), from Canny to the blend.

On a GPU the torch path of these steps is some 500 operators (Canny's stencils, a hysteresis
round of gathers that the host checks every few rounds, 41 row offsets of table lookups for the
distance, the box sums, equalisation, emboss and blend), and the host waits for the device in
the hysteresis. Here they are nine kernels and no wait: each function returns what its torch
counterpart in :mod:`._spatter` returns, bit for bit (integer arithmetic, comparisons, minima of
the same float32 table values, and the float steps rounded as torch rounds them), or ``None``
when its kernels are unavailable or fail, and the caller then takes the torch path.
"""

from __future__ import annotations

import torch

from robench.fused import FusedKernel, tl, triton
from robench_plugins.distortions._device import constant

if triton is not None:
    from robench.fused import round_half_even

CANNY = FusedKernel("spatter canny")
HYSTERESIS = FusedKernel("spatter hysteresis")
DISTANCE = FusedKernel("spatter distance")
FINISH = FusedKernel("spatter water finish")
_BINS = 32  # histogram bins of the smoothed distance (levels 0..20), a power of two for Triton


def canny_codes(level: torch.Tensor, low: int, high: int) -> torch.Tensor | None:
    """OpenCV's Canny up to its hysteresis, for integer-valued float32 ``(B, 1, H, W)``: int8
    codes, 2 where the magnitude is a strong edge (above ``high``), 1 where it is only weak
    (above ``low``), 0 elsewhere, after non-maximum suppression."""
    if not CANNY.available(level.device):
        return None
    level = level.contiguous()
    b, _, h, w = level.shape
    codes = torch.empty(level.shape, dtype=torch.int8, device=level.device)
    return codes if CANNY.launch(_canny_kernel, b * h * w, 512, level, codes, b * h * w, h, w, low, high) else None


def hysteresis(codes: torch.Tensor) -> torch.Tensor | None:
    """Edges of :func:`canny_codes`: the weak pixels 8-connected through weak ones to a strong
    one, and the strong ones; bool ``(B, 1, H, W)``. One program per image grows them until a
    round changes nothing, so the host never waits. ``codes`` is updated in place."""
    if not HYSTERESIS.available(codes.device):
        return None
    b, _, h, w = codes.shape
    scratch = torch.empty((b, h * w), dtype=torch.int32, device=codes.device)  # each image's weak pixels
    if not HYSTERESIS.launch(_hysteresis_kernel, b * 1024, 1024, codes, scratch, h, w):  # a program per image
        return None
    return codes == 2


def truncated_distance(edges: torch.Tensor, table: torch.Tensor) -> torch.Tensor | None:
    """:func:`._spatter._truncated_distance` of bool ``(B, 1, H, W)`` edges: the gaps to the
    nearest edge left and right in every row (one program per row), then each pixel's minimum
    over the 41 rows within reach of the tabulated lengths ``table`` (``_chamfer_pairs``)."""
    if not DISTANCE.available(edges.device):
        return None
    b, _, h, w = edges.shape
    flat = edges.view(torch.uint8) if edges.is_contiguous() else edges.contiguous().view(torch.uint8)
    pairs = torch.empty((b, h, w), dtype=torch.int16, device=edges.device)
    width = triton.next_power_of_2(w)
    if not DISTANCE.launch(_pairs_kernel, b * h * width, width, flat, pairs, w):
        return None
    dist = torch.empty(edges.shape, dtype=torch.float32, device=edges.device)
    if not DISTANCE.launch(_distance_kernel, b * h * w, 512, pairs, table, dist, b * h * w, h, w):
        return None
    return dist


def water_finish(dist: torch.Tensor, level: torch.Tensor, images: torch.Tensor,
                 intensity: float | torch.Tensor, colour: torch.Tensor) -> torch.Tensor | None:
    """The rest of ``_spatter._water`` after the distance, in five kernels: the distance's 3x3
    mean cut to uint8 levels and each image's histogram of them, each image's equalisation table,
    the emboss of the equalised levels, their 3x3 rounded mean times the liquid's level and each
    image's peak of that, then the blend of ``colour`` (float32 ``(3,)``) scaled by it."""
    if not FINISH.available(dist.device):
        return None
    b, c, h, w = images.shape
    n, block = h * w, 512
    programs = b * triton.cdiv(n, block)  # per image, blocks of its pixels
    device = dist.device
    smooth = torch.empty((b, n), dtype=torch.uint8, device=device)
    counts = torch.zeros((b, _BINS), dtype=torch.int32, device=device)
    emboss = torch.empty((b, n), dtype=torch.uint8, device=device)
    scaled = torch.empty((b, n), dtype=torch.float32, device=device)
    peak = torch.zeros((b,), dtype=torch.int32, device=device)
    if not isinstance(intensity, torch.Tensor):
        intensity = torch.full((b,), intensity, dtype=torch.float32, device=device)
    out = torch.empty_like(images)
    level, images = level.contiguous(), images.contiguous()
    exact = {"enable_fp_fusion": False}  # each product rounded, as torch's separate operators round it
    if not FINISH.launch(_smooth_kernel, programs * block, block, dist.contiguous(),
                         constant((1 / 9,), device, torch.float64), smooth, counts, h, w, BINS=_BINS, **exact):
        return None
    table = equalisation_tables(counts, n)
    if (table is None
            or not FINISH.launch(_emboss_kernel, b * n, block, smooth, table, emboss, b * n, h, w, BINS=_BINS, **exact)
            or not FINISH.launch(_peak_kernel, programs * block, block, emboss, level, scaled, peak, h, w, **exact)
            or not FINISH.launch(_blend_kernel, b * c * n, block, images, scaled, peak, intensity.reshape(b).float(),
                                 colour, out, b * c * n, c, n, **exact)):
        return None
    return out


def equalisation_tables(counts: torch.Tensor, n: int) -> torch.Tensor | None:
    """cv2.equalizeHist's table for each row of int32 ``counts`` (``(B, 32)``: how many of an
    image's ``n`` pixels have each level), float32 ``(B, 32)``; as ``_spatter._equalize_hist``."""
    if not FINISH.available(counts.device):
        return None
    table = torch.empty(counts.shape, dtype=torch.float32, device=counts.device)
    ok = FINISH.launch(_table_kernel, counts.numel(), _BINS, counts, table, n, BINS=_BINS, enable_fp_fusion=False)
    return table if ok else None


if triton is not None:

    @triton.jit
    def _level_at(level_ptr, base, y, x, h, w, mask):
        """The level at (y, x) with OpenCV's replicated border, as int32."""
        y = tl.minimum(tl.maximum(y, 0), h - 1)
        x = tl.minimum(tl.maximum(x, 0), w - 1)
        return tl.load(level_ptr + base + y * w + x, mask=mask, other=0.0).to(tl.int32)

    @triton.jit
    def _sobel(level_ptr, base, y, x, h, w, mask):
        """3x3 Sobel gradients (gx, gy) at (y, x) and their L1 magnitude; 0 outside the image."""
        a = _level_at(level_ptr, base, y - 1, x - 1, h, w, mask)
        b = _level_at(level_ptr, base, y - 1, x, h, w, mask)
        c = _level_at(level_ptr, base, y - 1, x + 1, h, w, mask)
        d = _level_at(level_ptr, base, y, x - 1, h, w, mask)
        f = _level_at(level_ptr, base, y, x + 1, h, w, mask)
        g = _level_at(level_ptr, base, y + 1, x - 1, h, w, mask)
        k = _level_at(level_ptr, base, y + 1, x, h, w, mask)
        m = _level_at(level_ptr, base, y + 1, x + 1, h, w, mask)
        gx = (c - a) + 2 * (f - d) + (m - g)
        gy = (g - a) + 2 * (k - b) + (m - c)
        inside = (y >= 0) & (y < h) & (x >= 0) & (x < w)
        mag = tl.where(inside, tl.abs(gx) + tl.abs(gy), 0)
        return gx, gy, mag

    @triton.jit(do_not_specialize=["total", "h", "w", "low", "high"])
    def _canny_kernel(level_ptr, codes_ptr, total, h, w, low, high, BLOCK: tl.constexpr):
        """:func:`canny_codes` per pixel: its magnitude against its two neighbours along the
        binned gradient direction (``_non_max_suppression``), then the two thresholds."""
        lane = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
        mask = lane < total
        base = (lane // (h * w)) * (h * w)
        pixel = (lane % (h * w)).to(tl.int32)
        y, x = pixel // w, pixel % w
        gx, gy, mag = _sobel(level_ptr, base, y, x, h, w, mask)
        _, _, up_left = _sobel(level_ptr, base, y - 1, x - 1, h, w, mask)
        _, _, up = _sobel(level_ptr, base, y - 1, x, h, w, mask)
        _, _, up_right = _sobel(level_ptr, base, y - 1, x + 1, h, w, mask)
        _, _, left = _sobel(level_ptr, base, y, x - 1, h, w, mask)
        _, _, right = _sobel(level_ptr, base, y, x + 1, h, w, mask)
        _, _, down_left = _sobel(level_ptr, base, y + 1, x - 1, h, w, mask)
        _, _, down = _sobel(level_ptr, base, y + 1, x, h, w, mask)
        _, _, down_right = _sobel(level_ptr, base, y + 1, x + 1, h, w, mask)
        ax, ay = tl.abs(gx), tl.abs(gy) << 15
        tg22 = ax * 13573  # round(tan(22.5 deg) * 2^15), as _spatter._TG22
        horizontal = ay < tg22
        vertical = ay > tg22 + (ax << 16)
        same_sign = (gx < 0) == (gy < 0)
        before = tl.where(same_sign, up_left, up_right)
        after = tl.where(same_sign, down_right, down_left)
        diagonal = (mag > before) & (mag > after)
        peak = tl.where(horizontal, (mag > left) & (mag >= right),
                        tl.where(vertical, (mag > up) & (mag >= down), diagonal))
        code = tl.where(peak & (mag > low), tl.where(mag > high, 2, 1), 0)
        tl.store(codes_ptr + lane, code.to(tl.int8), mask=mask)

    @triton.jit(do_not_specialize=["h", "w"])
    def _hysteresis_kernel(codes_ptr, scratch_ptr, h, w, BLOCK: tl.constexpr):
        """:func:`hysteresis` for image ``program_id``: its weak pixels gathered into its row of
        ``scratch``, then rounds over them, each promoting (code 1 -> 2) those with a strong
        neighbour, until a round promotes none. A round sees promotions made earlier in the
        same round or not (both are edges in the end); the barrier after a round makes all of
        them visible to the next, so a round without promotions read the final state."""
        image = tl.program_id(0).to(tl.int64)
        n = h * w
        codes = codes_ptr + image * n
        weak = scratch_ptr + image * n
        offsets = tl.arange(0, BLOCK)
        count = tl.full((), 0, tl.int32)
        for start in range(0, n, BLOCK):
            pixel = start + offsets
            is_weak = (tl.load(codes + pixel, mask=pixel < n, other=0) == 1).to(tl.int32)
            tl.store(weak + count + tl.cumsum(is_weak, 0) - 1, pixel, mask=is_weak == 1)
            count += tl.sum(is_weak, 0)
        tl.debug_barrier()
        promoted = count
        while promoted > 0:
            promoted = tl.full((), 0, tl.int32)
            for start in range(0, count, BLOCK):
                index = start + offsets
                live = index < count
                pixel = tl.load(weak + index, mask=live, other=0)
                y, x = pixel // w, pixel % w
                reached = tl.zeros((BLOCK,), dtype=tl.int1)
                for dy in tl.static_range(-1, 2):
                    for dx in tl.static_range(-1, 2):
                        if dy != 0 or dx != 0:
                            inside = live & (y + dy >= 0) & (y + dy < h) & (x + dx >= 0) & (x + dx < w)
                            near = tl.load(codes + pixel + dy * w + dx, mask=inside, other=0)
                            reached = reached | (near == 2)
                grow = live & reached & (tl.load(codes + pixel, mask=live, other=0) == 1)
                tl.store(codes + pixel, tl.full((BLOCK,), 2, tl.int8), mask=grow)
                promoted += tl.sum(grow.to(tl.int32), 0)
            tl.debug_barrier()

    @triton.jit
    def _max(a, b):
        return tl.maximum(a, b)

    @triton.jit
    def _min(a, b):
        return tl.minimum(a, b)

    @triton.jit(do_not_specialize=["w"])
    def _pairs_kernel(edges_ptr, pairs_ptr, w, BLOCK: tl.constexpr):
        """For row ``program_id`` of the batch (``BLOCK`` >= W lanes): each column's gaps to the
        nearest edge on its left and on its right (itself included), capped at 21, as
        ``left * 22 + right``: ``_truncated_distance``'s running max / min of edge columns."""
        row = tl.program_id(0).to(tl.int64)
        col = tl.arange(0, BLOCK)
        inside = col < w
        edge = tl.load(edges_ptr + row * w + col, mask=inside, other=0) != 0
        far = w + 21
        last = tl.associative_scan(tl.where(edge, col, -far), 0, _max)
        following = tl.associative_scan(tl.where(edge, col, w + far), 0, _min, reverse=True)
        pair = tl.minimum(col - last, 21) * 22 + tl.minimum(following - col, 21)
        tl.store(pairs_ptr + row * w + col, pair.to(tl.int16), mask=inside)

    @triton.jit(do_not_specialize=["total", "h", "w"])
    def _distance_kernel(pairs_ptr, table_ptr, dist_ptr, total, h, w, BLOCK: tl.constexpr):
        """Each pixel's distance: 20, lowered by the tabulated length to the nearer of the two
        edges of each row within 20 of it (rows outside the image hold none)."""
        lane = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
        mask = lane < total
        pixel = (lane % (h * w)).to(tl.int32)
        y = pixel // w
        dist = tl.full((BLOCK,), 20.0, tl.float32)
        for dy in tl.static_range(-20, 21):
            inside = mask & (y - dy >= 0) & (y - dy < h)
            # outside: gaps (21, 21), no edge within reach (a table row holds 22 x 22 pairs)
            pair = tl.load(pairs_ptr + lane - dy * w, mask=inside, other=21 * 22 + 21).to(tl.int32)
            dist = tl.minimum(dist, tl.load(table_ptr + (dy + 20) * 484 + pair))
        tl.store(dist_ptr + lane, dist, mask=mask)

    @triton.jit
    def _reflect(i, size):
        """OpenCV's BORDER_REFLECT_101 for an index at most one outside ``[0, size)``."""
        return tl.where(i < 0, -i, tl.where(i >= size, 2 * size - 2 - i, i))

    @triton.jit
    def _image_block(h, w, BLOCK: tl.constexpr):
        """This program's block of one image's pixels (each image in whole blocks: per-image sums
        stay within a program): the image, the pixels, which are in it, their rows and columns."""
        blocks = tl.cdiv(h * w, BLOCK)
        image = tl.program_id(0) // blocks
        pixel = (tl.program_id(0) % blocks) * BLOCK + tl.arange(0, BLOCK)
        return image, pixel, pixel < h * w, pixel // w, pixel % w

    @triton.jit(do_not_specialize=["h", "w"])
    def _smooth_kernel(dist_ptr, ninth_ptr, smooth_ptr, counts_ptr, h, w, BINS: tl.constexpr, BLOCK: tl.constexpr):
        """The distance's 3x3 box sum (reflected border) in float64 times 1/9, as float32, floored
        (cv2.blur, then astype(uint8)); counted per image into ``BINS`` bins."""
        n = h * w
        image, pixel, mask, y, x = _image_block(h, w, BLOCK)
        base = dist_ptr + image.to(tl.int64) * n
        total = tl.zeros((BLOCK,), dtype=tl.float64)
        for dy in tl.static_range(-1, 2):
            for dx in tl.static_range(-1, 2):
                at = _reflect(y + dy, h) * w + _reflect(x + dx, w)
                total += tl.load(base + at, mask=mask, other=0.0).to(tl.float64)  # exact sums
        ninth = tl.load(ninth_ptr)  # the double nearest 1/9, as torch multiplies by Python's 1 / 9
        value = tl.floor((total * ninth).to(tl.float32)).to(tl.int32)
        tl.store(smooth_ptr + image.to(tl.int64) * n + pixel, value.to(tl.uint8), mask=mask)
        counted = tl.histogram(tl.where(mask, value, BINS - 1), BINS)  # the last bin takes the padding
        bins = tl.arange(0, BINS)
        tl.atomic_add(counts_ptr + image * BINS + bins, counted, mask=bins < BINS - 1)

    @triton.jit(do_not_specialize=["n"])
    def _table_kernel(counts_ptr, table_ptr, n, BINS: tl.constexpr, BLOCK: tl.constexpr):
        """cv2.equalizeHist's table of image ``program_id`` (``_spatter._equalize_hist``): with v0
        the lowest level present, v -> round((cdf(v) - cdf(v0)) * (255 / (n - count(v0)))) in
        float32, ties to even; an image of one level keeps it."""
        image = tl.program_id(0)
        bins = tl.arange(0, BLOCK)
        counts = tl.load(counts_ptr + image * BINS + bins)
        first = tl.min(tl.where(counts > 0, bins, BINS), 0)
        base = tl.sum(tl.where(bins == first, counts, 0), 0)
        scale = tl.math.div_rn(tl.full((BLOCK,), 255.0, tl.float32), tl.maximum(n - base, 1).to(tl.float32))
        product = (tl.cumsum(counts, 0) - base).to(tl.float32) * scale
        rounded = round_half_even(product)  # products within 0..255 * 2^15: below 2^22
        value = tl.where(base == n, first.to(tl.float32), tl.minimum(tl.maximum(rounded, 0.0), 255.0))
        tl.store(table_ptr + image * BINS + bins, value)

    @triton.jit
    def _equalised(base, table, y, x, h, w, mask):
        """The equalised smoothed level at (y, x), reflected at the border."""
        level = tl.load(base + _reflect(y, h) * w + _reflect(x, w), mask=mask, other=0)
        return tl.load(table + level.to(tl.int32), mask=mask, other=0.0)

    @triton.jit(do_not_specialize=["total", "h", "w"])
    def _emboss_kernel(smooth_ptr, table_ptr, emboss_ptr, total, h, w, BINS: tl.constexpr, BLOCK: tl.constexpr):
        """The equalised levels correlated with the emboss kernel ((-2, -1, 0), (-1, 1, 1),
        (0, 1, 2); reflected border), clamped to 0..255: integers, exact in float32."""
        lane = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
        mask = lane < total
        image = lane // (h * w)
        pixel = (lane % (h * w)).to(tl.int32)
        y, x = pixel // w, pixel % w
        base = smooth_ptr + image * (h * w)
        table = table_ptr + image * BINS
        value = (_equalised(base, table, y - 1, x - 1, h, w, mask) * -2.0 - _equalised(base, table, y - 1, x, h, w, mask)
                 - _equalised(base, table, y, x - 1, h, w, mask) + _equalised(base, table, y, x, h, w, mask)
                 + _equalised(base, table, y, x + 1, h, w, mask) + _equalised(base, table, y + 1, x, h, w, mask)
                 + _equalised(base, table, y + 1, x + 1, h, w, mask) * 2.0)
        value = tl.minimum(tl.maximum(value, 0.0), 255.0)
        tl.store(emboss_ptr + lane, value.to(tl.uint8), mask=mask)

    @triton.jit(do_not_specialize=["h", "w"])
    def _peak_kernel(emboss_ptr, level_ptr, scaled_ptr, peak_ptr, h, w, BLOCK: tl.constexpr):
        """The emboss's 3x3 rounded mean (uint8 cv2.blur: (sum + 4) // 9, reflected border) times
        the liquid's level, and each image's largest such value."""
        n = h * w
        image, pixel, mask, y, x = _image_block(h, w, BLOCK)
        base = image.to(tl.int64) * n
        total = tl.zeros((BLOCK,), dtype=tl.int32)
        for dy in tl.static_range(-1, 2):
            for dx in tl.static_range(-1, 2):
                at = _reflect(y + dy, h) * w + _reflect(x + dx, w)
                total += tl.load(emboss_ptr + base + at, mask=mask, other=0).to(tl.int32)
        level = tl.load(level_ptr + base + pixel, mask=mask, other=0.0)
        value = level * ((total + 4) // 9).to(tl.float32)  # integers below 2^16: exact
        tl.store(scaled_ptr + base + pixel, value, mask=mask)
        tl.atomic_max(peak_ptr + image, tl.max(tl.where(mask, value, 0.0), 0).to(tl.int32))

    @triton.jit(do_not_specialize=["total", "channels", "n"])
    def _blend_kernel(images_ptr, scaled_ptr, peak_ptr, intensity_ptr, colour_ptr, out_ptr, total, channels, n,
                      BLOCK: tl.constexpr):
        """``clamp(image + (scaled / peak * intensity) * colour, 0, 1)``, each product rounded as
        torch rounds it (no fused multiply-add: launched with fp fusion off); an image without
        liquid (peak 0) stays as it is."""
        lane = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
        mask = lane < total
        plane = lane // n
        image = plane // channels
        peak = tl.load(peak_ptr + image, mask=mask, other=0).to(tl.float32)
        scaled = tl.load(scaled_ptr + image * n + lane % n, mask=mask, other=0.0)
        share = tl.where(peak > 0, tl.math.div_rn(scaled, tl.maximum(peak, 1.0)), 0.0)
        share = share * tl.load(intensity_ptr + image, mask=mask, other=0.0)
        colour = tl.load(colour_ptr + plane % channels, mask=mask, other=0.0)
        value = tl.load(images_ptr + lane, mask=mask, other=0.0) + share * colour
        tl.store(out_ptr + lane, tl.minimum(tl.maximum(value, 0.0), 1.0), mask=mask)
