"""A name → object registry: every name a user types is registered once, here."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Generic, TypeVar

from lossbench.errors import LossbenchError

T = TypeVar("T")


class Registry(Generic[T]):
    """Maps the names used in configs (``loss=bce``) to the objects that implement them."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._items: dict[str, T] = {}
        self._aliases: dict[str, str] = {}

    def register(self, name: str) -> Callable[[T], T]:
        def add(obj: T) -> T:
            if name in self._items:
                raise ValueError(f"{self.kind} {name!r} is registered twice")
            self._items[name] = obj
            return obj

        return add

    def alias(self, alias: str, name: str) -> None:
        """Let ``alias`` (e.g. a Keras name) stand for the registered ``name``."""
        self._aliases[alias] = name

    def canonical(self, name: str) -> str:
        """The registered name that ``name`` is, or stands for."""
        return self._aliases.get(name, name)

    def aliases(self) -> dict[str, str]:
        return dict(self._aliases)

    def __getitem__(self, name: str) -> T:
        try:
            return self._items[self.canonical(name)]
        except KeyError:
            raise LossbenchError(
                f"unknown {self.kind} {name!r}; choose one of: {', '.join(self.names())} "
                f"(e.g. `python train.py {self.kind}={self.names()[0]}`)"
            ) from None

    def __contains__(self, name: object) -> bool:
        return name in self._items or name in self._aliases

    def __iter__(self) -> Iterator[str]:
        return iter(self._items)

    def names(self) -> list[str]:
        return list(self._items)
