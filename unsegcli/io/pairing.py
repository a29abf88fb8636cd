"""Pairing files across folders: images <-> masks <-> ground truth, by one set of rules.

A ``FileIndex`` holds the files under one root and finds them by relative path (with or without its
extension: ``a/b.png`` names the image ``a/b.*``, the mask naming rule of ``io.masks.mask_path_for``),
by stem anywhere under the root, or by the number a COCO file name ends with
(``COCO_train2014_000000000009.jpg`` -> 9). A name that more than one file fits is never resolved
by file-system order: the lookup records every candidate and ``Found.problem`` words it the same way
for every command (boxes, refine, show, corloc, eval saliency).
"""

from __future__ import annotations

import posixpath
from dataclasses import dataclass

from .images import InputItem, scan_inputs


def stem(name: str) -> str:
    """File name without folders or extension (``a/b.c.png`` -> ``b.c``), for '/' and '\\' paths."""
    return posixpath.splitext(posixpath.basename(name.replace("\\", "/")))[0]


def key_of(rel: str) -> str:
    """A relative path without its extension: the name images, masks and outputs pair by."""
    return posixpath.splitext(rel.replace("\\", "/"))[0]


def coco_number(name: str) -> int | None:
    """The number a COCO file name ends with (LOST select_coco_20k: the part after the last '_'),
    or None when that part is not a number."""
    tail = stem(name).split("_")[-1]
    return int(tail) if tail.isdigit() else None


def ambiguity(subject: str, what: str, paths: tuple[str, ...] | list[str]) -> str:
    """The one message for a name that several files fit: every command reports it so."""
    return f"{subject}: its {what} is ambiguous: {len(paths)} files fit ({', '.join(paths)}); keep one"


@dataclass(frozen=True)
class Found:
    """What a lookup found: one ``item``, or none with every ``candidates`` path when several fit."""

    name: str  # what was looked up (a relative path, a stem or a number), for messages
    item: InputItem | None = None
    candidates: tuple[str, ...] = ()

    @property
    def ambiguous(self) -> bool:
        return len(self.candidates) > 1

    def problem(self, subject: str, what: str, root: str) -> str:
        """Why nothing was paired with ``subject``: the ambiguity, or that nothing fits under ``root``."""
        if self.ambiguous:
            return ambiguity(subject, what, self.candidates)
        return f"{subject}: no {what} '{self.name}.*' under {root}"


def _found(name: str, items: list[InputItem]) -> Found:
    if len(items) == 1:
        return Found(name, items[0], (items[0].path,))
    return Found(name, None, tuple(it.path for it in items))


class FileIndex:
    """The files with ``exts`` under ``root`` (recursive, hidden ones skipped, as ``io.images.scan_inputs``
    lists them), indexed for every pairing rule."""

    def __init__(self, root: str, exts: tuple[str, ...]):
        self.root = root
        self.items = scan_inputs([root], exts, key=lambda rel: rel).items  # sorted; ambiguity is ours to record
        self._by_rel = {it.rel: it for it in self.items}
        self._by_key: dict[str, list[InputItem]] = {}
        self._by_stem: dict[str, list[InputItem]] = {}
        self._by_number: dict[int, list[InputItem]] = {}
        for it in self.items:
            self._by_key.setdefault(key_of(it.rel), []).append(it)
            self._by_stem.setdefault(stem(it.rel), []).append(it)
            number = coco_number(it.rel)
            if number is not None:
                self._by_number.setdefault(number, []).append(it)

    def by_key(self, key: str) -> Found:
        """The file at relative path ``key`` with any extension (``a/b`` -> ``a/b.jpg``; ``a/b.jpg`` and
        ``a/b.png`` together are ambiguous)."""
        return _found(key, self._by_key.get(key, []))

    def by_name(self, name: str) -> Found:
        """The file at relative path ``name`` exactly, else by its key (another extension)."""
        name = name.replace("\\", "/")
        exact = self._by_rel.get(name)
        return Found(key_of(name), exact, (exact.path,)) if exact is not None else self.by_key(key_of(name))

    def by_stem(self, name: str) -> Found:
        """The one file anywhere under the root whose stem is ``name``'s."""
        return _found(stem(name), self._by_stem.get(stem(name), []))

    def by_number(self, number: int) -> Found:
        """The one file whose name ends with ``number`` (COCO ids)."""
        return _found(str(number), self._by_number.get(number, []))

    def find(self, name: str) -> Found:
        """By relative path, else (nothing there, nothing ambiguous) by a unique stem."""
        found = self.by_name(name)
        if found.item is None and not found.ambiguous:
            return self.by_stem(name)
        return found
