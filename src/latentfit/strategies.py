"""Registries of small strategy objects: a strategy is a frozen dataclass with a `name`, its options
as fields and `to_dict`/`from_dict`; a registry finds one by name (with a one-line error naming the
choices). The refinement's schedules (`latentfit.schedules`) and training's fine-tuning kinds
(`latentfit.training.FINETUNES`) are such registries: a new one is one class, registered.
"""

from __future__ import annotations

import dataclasses
from typing import Any, ClassVar, Generic, TypeVar

from .errors import LatentfitError

S = TypeVar("S")


class Registry(Generic[S]):
    """Strategies of one kind by name."""

    def __init__(self, kind: str):
        self.kind = kind
        self.entries: dict[str, type[S]] = {}

    def register(self, cls: type[S]) -> type[S]:
        """Class decorator: make `cls` selectable by its `name`."""
        self.entries[cls.name] = cls
        return cls

    def names(self) -> tuple[str, ...]:
        return tuple(self.entries)

    def get(self, name: str, **options: Any) -> S:
        """The strategy `name` with `options`; a one-line error for an unknown name or option."""
        if name not in self.entries:
            raise LatentfitError(f"unknown {self.kind} '{name}' (use {', '.join(self.entries)})")
        try:
            return self.entries[name](**options)
        except (TypeError, ValueError) as exc:
            raise LatentfitError(f"bad {self.kind} '{name}': {exc}") from None

    def accepted(self, name: str, **options: Any) -> dict:
        """Those of `options` that the strategy `name` takes (settings of `RefinementConfig` that only
        some strategies use, e.g. the cosine lr's final fraction)."""
        cls = self.entries.get(name)
        fields = {f.name for f in dataclasses.fields(cls)} if cls is not None and dataclasses.is_dataclass(cls) else set()
        return {key: value for key, value in options.items() if key in fields}

    def from_dict(self, data: dict) -> S:
        """The strategy a `to_dict()` described."""
        options = dict(data)
        return self.get(options.pop("name", None), **options)


class Strategy:
    """Base of the registered strategies: `name` and its options (the dataclass fields)."""

    name: ClassVar[str]

    def to_dict(self) -> dict:
        return {"name": self.name} | dataclasses.asdict(self)

    def record(self) -> dict:
        """What a refinement record says of it besides its name (`RefinementConfig.to_dict`'s layout)."""
        return {}


