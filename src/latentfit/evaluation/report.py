"""A self-contained HTML report of an evaluation: plots, BD-rate table, averages, and a crop viewer
(original / no refinement / refined at about the same bpp), every image embedded as a data URI."""

from __future__ import annotations

import base64
import html
import io
from collections import defaultdict
from pathlib import Path

import numpy as np
from PIL import Image

from ..bitstream import from_bytes
from ..codec import decode_stream
from ..errors import LatentfitError
from ..imageio import atomic_write_bytes, center_box, center_crop, load_image, to_uint8
from ..models.registry import load_model
from ..relaxations import is_plain
from .classical import is_classical
from .runner import METRIC_PLOTS, Cell, EvalConfig, cell_file, curve_method


#: `summary.bd_rates` keys of the other metrics' BD-rates, and their column titles.
METRIC_COLUMNS = (("bd_rate_ms_ssim", "MS-SSIM (dB)"), ("bd_rate_ssimulacra2", "SSIMULACRA2"),
                  ("bd_rate_cvvdp", "ColorVideoVDP"))


def _png_uri(pixels: np.ndarray) -> str:
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()


def _file_uri(path: Path) -> str:
    return "data:image/png;base64," + base64.b64encode(path.read_bytes()).decode()


def _viewer_rows(records: list[dict], config: EvalConfig, results_dir: Path, images: int, crop: int) -> list[str]:
    """For the first `images` images: original, `none`, and the best refined cell at the nearest bpp."""
    by_image: dict[str, list[dict]] = defaultdict(list)
    for record in records:
        if not is_classical(record["method"]):
            by_image[record["image"]].append(record)
    sources = {f"{Path(d).name}/{p.name}": p for d in config.datasets for p in sorted(Path(d).iterdir())}
    rows, models, shown = [], {}, 0
    for image_key in sorted(by_image):
        if shown == images:
            break
        cells = by_image[image_key]
        baselines = [r for r in cells if is_plain(r["method"])]
        refined = [r for r in cells if not is_plain(r["method"])]
        if not baselines or not refined or image_key not in sources:
            continue
        baseline = baselines[len(baselines) // 2]
        match = min(refined, key=lambda r: (abs(r["bpp"] - baseline["bpp"]), -r["psnr"]))
        original = to_uint8(center_crop(load_image(sources[image_key]), config.crop).tensor)
        shown_rows, shown_cols = center_box(*original.shape[:2], crop)
        panels = [("original", original, "")]
        try:
            for record in (baseline, match):
                cell = Cell.of(record)
                path = cell_file(results_dir, cell)
                if not path.exists():
                    raise LatentfitError(f"{path}: missing")
                stream = from_bytes(path.read_bytes(), str(path))
                key = (stream.model_name, stream.quality)
                if key not in models:
                    models[key] = (load_model(checkpoint=config.checkpoint) if config.checkpoint
                                   else load_model(*key))
                label = f"{record['method']} ({record['steps']} steps)" if record["steps"] else "no refinement"
                panels.append((label, decode_stream(stream, models[key]),
                               f"{record['bpp']:.3f} bpp, {record['psnr']:.2f} dB"))
        except LatentfitError as exc:
            # e.g. a file made on another machine whose scale indexes differ here: the numbers in the
            # tables were measured where the cell ran; only this picture cannot be shown
            rows.append(f'<p class="skipped">{html.escape(image_key)}: not shown, its file cannot be decoded '
                        f"here ({html.escape(str(exc))}).</p>")
            continue
        shown += 1
        figures = "".join(
            f'<figure><img alt="{html.escape(label)}" src="{_png_uri(np.ascontiguousarray(pixels[shown_rows, shown_cols]))}">'
            f"<figcaption>{html.escape(label)}<br>{html.escape(caption)}</figcaption></figure>"
            for label, pixels, caption in panels
        )
        rows.append(f'<section class="viewer"><h3>{html.escape(image_key)}</h3><div class="row">{figures}</div></section>')
    return rows


def write_report(records: list[dict], summary: dict, config: EvalConfig, results_dir: str | Path,
                 viewer_images: int = 4, crop: int = 192) -> Path:
    """Write `results_dir/report.html` and return its path."""
    results_dir = Path(results_dir)
    def signed(value, unit: str, digits: int) -> str:
        return "—" if value is None else f"{value:+.{digits}f} {unit}"

    # BD-rates in the other metrics, where the summary has them (MS-SSIM always; `eval --metric` the rest)
    metrics = [(key, label) for key, label in METRIC_COLUMNS
               if any(r.get(key) is not None for r in summary["bd_rates"])]
    table = "".join(
        f"<tr><td>{html.escape(str(r['model']))}</td><td>{html.escape(str(r['method']))}</td><td>{r['steps']}</td>"
        f"<td>{html.escape(r['anchor'])}</td><td>{signed(r['bd_rate'], '%', 2)}</td>"
        f"<td>{signed(r['bd_psnr'], 'dB', 3)}</td>"
        f"<td>{'—' if r.get('psnr_overlap') is None else format(r['psnr_overlap'], '.0%')}</td>"
        + "".join(f"<td>{signed(r.get(key), '%', 2)}</td>" for key, _ in metrics) + "</tr>"
        for r in summary["bd_rates"]
    )
    metric_headers = "".join(f"<th>BD-rate, {label}</th>" for _, label in metrics)
    averages: dict[tuple, list[dict]] = defaultdict(list)
    for record in records:
        averages[(record["model"], curve_method(record), record["steps"], record["quality"])].append(record)
    def mean(rows: list[dict], key: str, digits: int) -> str:  # "—" where any image lacks the value
        values = [r.get(key) for r in rows]
        return "—" if any(v is None for v in values) else f"{sum(values) / len(values):.{digits}f}"

    average_rows = "".join(
        f"<tr><td>{html.escape(str(m))}</td><td>{html.escape(str(meth))}</td><td>{st}</td><td>{q}</td>"
        f"<td>{len(rows)}</td><td>{mean(rows, 'bpp', 4)}</td><td>{mean(rows, 'psnr', 2)}</td>"
        f"<td>{mean(rows, 'ms_ssim', 4)}</td><td>{mean(rows, 'seconds', 2)}</td></tr>"
        for (m, meth, st, q), rows in sorted(averages.items(), key=lambda item: tuple(map(str, item[0])))
    )
    plots = "".join(
        f'<figure><img class="plot" alt="{name}" src="{_file_uri(results_dir / name)}"></figure>'
        for name in ("rd.png", *(file for _, file, _ in METRIC_PLOTS), "gain_per_second.png", "convergence.png")
        if (results_dir / name).exists()
    )
    viewer = "".join(_viewer_rows(records, config, results_dir, viewer_images, crop))
    document = f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>latentfit evaluation</title>
<style>
body {{ font-family: sans-serif; margin: 2em; color: #222; }}
table {{ border-collapse: collapse; margin: 1em 0; }} td, th {{ border: 1px solid #ccc; padding: 3px 8px; text-align: right; }}
.row {{ display: flex; gap: 1em; flex-wrap: wrap; }} figure {{ margin: 0; }} img.plot {{ max-width: 100%; }}
.viewer img {{ image-rendering: pixelated; width: 288px; }} figcaption {{ font-size: 0.85em; text-align: center; }}
</style></head><body>
<h1>latentfit evaluation</h1>
<p>{len(records)} cells from {html.escape(', '.join(config.datasets))}; crop {html.escape(str(config.crop))};
seed {config.refinement.seed}; lr {config.refinement.lr or "each method's own"}; λ {html.escape(str(config.refinement.lmbda or "model's own"))}.</p>
<h2>BD-rate against no refinement</h2>
<table><tr><th>model</th><th>method</th><th>steps</th><th>anchor</th><th>BD-rate</th><th>BD-PSNR</th><th>PSNR overlap</th>{metric_headers}</tr>{table}</table>
<h2>Plots</h2><div class="row">{plots}</div>
<h2>Crops: original / no refinement / refined at about the same bpp</h2>{viewer}
<h2>Averages</h2>
<table><tr><th>model</th><th>method</th><th>steps</th><th>quality</th><th>images</th><th>bpp</th><th>PSNR</th>
<th>MS-SSIM</th><th>seconds</th></tr>{average_rows}</table>
<script>
window.addEventListener("load", () => {{
  const images = Array.from(document.images);
  const shown = images.filter((img) => img.complete && img.naturalWidth > 0).length;
  document.title = `latentfit evaluation: ${{shown}}/${{images.length}} images shown`;
}});
</script>
</body></html>
"""
    path = results_dir / "report.html"
    atomic_write_bytes(path, document.encode(), force=True)
    return path
