"""What one evaluation cell records: the journal's line, typed.

Records stay plain JSON objects (the journal is JSON lines, readable without latentfit), and these
types say what each holds. `check_record` refuses a journal line that lacks a field every consumer
reads or has it of the wrong type, naming the file and line, instead of failing later in a table.
Older records may lack the optional fields (`config`, `lmbda_point`, ...): readers use `.get`.
"""

from __future__ import annotations

from typing import TypedDict, get_type_hints

from ..errors import LatentfitError


class _Required(TypedDict):
    cell: str  #: `Cell.key`: image|q<quality>|method|steps[|λpoint]
    config_id: str  #: `EvalConfig.identity()` of the run that made it
    image: str  #: "<folder>/<file>"
    quality: int  #: the model quality (learned) or the sweep level k (classical)
    method: str  #: a method spec (`sga+ssl3:a=1.4`), or a classical codec spec (`avif:speed=6`)
    steps: int
    bytes: int  #: the real file's size
    bpp: float
    psnr: float


class Record(_Required, total=False):
    """A cell of either kind: the fields every table, plot and BD-rate reads, and the common extras."""

    model: str
    width: int
    height: int
    ms_ssim: float | None  #: None when the image is too small for 5 scales
    seconds: float


class LearnedRecord(Record, total=False):
    """A learned codec's cell: `codec.encode_stats` plus the cell and the trace."""

    lmbda_point: str  #: "" (the model's own λ), "x0.5" or "0.0049"
    weights_digest: str
    config: dict  #: `RefinementConfig.to_dict()`: the run can be re-made from it
    proxy_options: dict
    lmbda: float
    seed: int
    lr: float
    true_loss_initial: float
    true_loss_final: float
    true_bpp_initial: float
    true_bpp_final: float
    true_psnr_initial: float
    true_psnr_final: float
    steps_run: int
    best_step: int
    stopped_by: str  #: "steps", "time_budget" or "plateau"
    tiles: int
    device: str
    trace: list[dict]  #: `TraceRecord` fields and `gap`, one per true-loss evaluation


class ClassicalRecord(Record, total=False):
    """A classical codec's sweep point (`classical.sweep`)."""

    codec: str
    setting: int  #: the codec's knob (quality, or target PSNR for JPEG 2000)
    codec_options: dict
    psnr_range: list[float]  #: the learned cells' PSNR range this image's sweep bracketed
    probes: int  #: encodes the bisection took for this image


def check_record(record: object, where: str) -> Record:
    """`record` as a `Record`, or a one-line error naming `where` (file:line) and what is wrong."""
    if not isinstance(record, dict):
        raise LatentfitError(f"{where}: not a results record (a JSON object), got {type(record).__name__}")
    for name, kind in get_type_hints(_Required).items():
        if name not in record:
            raise LatentfitError(f"{where}: results record without '{name}'")
        accepted = (int, float) if kind is float else kind  # JSON writes 2.0 as 2.0, but a float may be whole
        if not isinstance(record[name], accepted) or isinstance(record[name], bool):
            raise LatentfitError(f"{where}: results record's '{name}' should be {kind.__name__}, got {record[name]!r}")
    return record  # type: ignore[return-value]
