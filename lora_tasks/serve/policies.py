"""Which adapter leaves a full cache tier next: LRU (the baseline), LFU, ARC and W-TinyLFU behind one contract.

The cache that owns the bytes enforces its own bounds (count, bytes) and calls the hooks; the policy only
keeps the order. LRU and LFU are cachetools' (``LRUCache``/``LFUCache`` with an unbounded size, evicting by
``popitem``). ARC (Megiddo & Modha, FAST 2003) and W-TinyLFU (Einziger, Friedman & Manes, 2017, as Caffeine
builds it) are written here: no well-kept Python library exposes them with eviction hooks (cachetools has
neither, and the caches that do are whole caches that evict on their own).
"""

from __future__ import annotations

import hashlib
from abc import ABC, abstractmethod
from collections import OrderedDict
from functools import lru_cache
from typing import ClassVar

from cachetools import Cache, LFUCache, LRUCache


class EvictionPolicy(ABC):
    """Which resident key leaves next. The cache owning the bytes enforces its own bounds (count, bytes)
    and calls these hooks; a missed key is always admitted (it is needed for the request at hand)."""

    name: ClassVar[str]

    def __init__(self, slots: int) -> None:
        """``slots``: the capacity in entries, a hint for window and ghost sizes."""
        if slots < 1:
            raise ValueError(f"slots must be at least 1, not {slots}")
        self.slots = slots

    @abstractmethod
    def hit(self, key: str) -> None:
        """A resident key was requested."""

    @abstractmethod
    def insert(self, key: str) -> None:
        """A missed key became resident (its request counts too)."""

    @abstractmethod
    def evict(self) -> str:
        """Choose a resident key, forget it and return it: never the key inserted last unless it is the only
        resident one; KeyError when empty."""

    @abstractmethod
    def discard(self, key: str) -> None:
        """A resident key left for another reason (invalidated); nothing happens if it is absent."""

    @abstractmethod
    def __len__(self) -> int: ...

    @abstractmethod
    def __contains__(self, key: object) -> bool: ...


class _CachetoolsPolicy(EvictionPolicy):
    """A cachetools cache used as an eviction order only (values unused, size unbounded).

    cachetools can only pop its first choice: when that is the key inserted last and others remain, the next
    one leaves instead and the key goes back with the uses it had (for LRU, as the most recent)."""

    def __init__(self, slots: int) -> None:
        super().__init__(slots)
        self._order = self._make_order()
        self._newest: str | None = None
        self._newest_uses = 0

    @staticmethod
    @abstractmethod
    def _make_order() -> Cache: ...

    def hit(self, key: str) -> None:
        if key in self._order:
            self._order[key]  # a read moves the key in the library's order
            self._newest_uses += key == self._newest

    def insert(self, key: str) -> None:
        self._order[key] = None
        self._newest, self._newest_uses = key, 1

    def evict(self) -> str:
        if not self._order:
            raise KeyError(f"{self.name}: nothing to evict")
        key = self._order.popitem()[0]
        if key != self._newest or not self._order:
            self.discard(key)
            return key
        victim = self._order.popitem()[0]
        self._order[key] = None
        for _ in range(self._newest_uses - 1):
            self._order[key]  # gives back the uses it had
        return victim

    def discard(self, key: str) -> None:
        self._order.pop(key, None)
        if key == self._newest:
            self._newest = None

    def __len__(self) -> int:
        return len(self._order)

    def __contains__(self, key: object) -> bool:
        return key in self._order


class LRUPolicy(_CachetoolsPolicy):
    """Least recently used leaves first: the baseline."""

    name = "lru"

    @staticmethod
    def _make_order() -> Cache:
        return LRUCache(maxsize=float("inf"))


class LFUPolicy(_CachetoolsPolicy):
    """Least frequently used leaves first (ties: least recently used), counting the uses of resident keys
    only: a key that left starts again from one, so it has no memory of keys that are not resident."""

    name = "lfu"

    @staticmethod
    def _make_order() -> Cache:
        return LFUCache(maxsize=float("inf"))


def _oldest(entries: OrderedDict[str, None], skip: str | None) -> str | None:
    """The least recent key of ``entries`` other than ``skip``."""
    for key in entries:
        if key != skip:
            return key
    return None


class ARCPolicy(EvictionPolicy):
    """Adaptive Replacement Cache: T1 holds keys seen once lately, T2 keys seen at least twice, and the ghost
    lists B1/B2 remember keys that recently left each; a miss that hits a ghost moves the target size ``p``
    of T1 towards the list that would have kept it. ``slots`` is ARC's c (ghosts are trimmed to it)."""

    name = "arc"

    def __init__(self, slots: int) -> None:
        super().__init__(slots)
        self._t1: OrderedDict[str, None] = OrderedDict()
        self._t2: OrderedDict[str, None] = OrderedDict()
        self._b1: OrderedDict[str, None] = OrderedDict()
        self._b2: OrderedDict[str, None] = OrderedDict()
        self._p = 0.0
        self._newest: str | None = None
        self._newest_from_b2 = False

    def hit(self, key: str) -> None:
        if key in self._t1:
            del self._t1[key]
            self._t2[key] = None
        elif key in self._t2:
            self._t2.move_to_end(key)

    def insert(self, key: str) -> None:
        b1, b2 = len(self._b1), len(self._b2)
        self._newest, self._newest_from_b2 = key, key in self._b2
        if key in self._b1:
            self._p = min(float(self.slots), self._p + max(b2 / b1, 1.0))
            del self._b1[key]
            self._t2[key] = None
        elif key in self._b2:
            self._p = max(0.0, self._p - max(b1 / b2, 1.0))
            del self._b2[key]
            self._t2[key] = None
        else:
            self._t1[key] = None
        self._trim_ghosts()

    def evict(self) -> str:
        """ARC's REPLACE, with the key being admitted left out of the lists' sizes as the paper's order has."""
        newest = self._newest
        t1 = len(self._t1) - (newest in self._t1)
        t2 = len(self._t2) - (newest in self._t2)
        if t1 + t2 == 0:
            if newest is None or newest not in self:
                raise KeyError("arc: nothing to evict")
            self.discard(newest)
            return newest
        if t1 and (t1 > self._p or (self._newest_from_b2 and t1 == self._p) or not t2):
            source, ghosts = self._t1, self._b1
        else:
            source, ghosts = self._t2, self._b2
        victim = _oldest(source, newest)
        assert victim is not None  # the chosen list has a key other than the newest
        del source[victim]
        ghosts[victim] = None
        self._trim_ghosts()
        return victim

    def _trim_ghosts(self) -> None:
        """ARC's bounds: |T1| + |B1| <= c and all four lists <= 2c."""
        while self._b1 and len(self._t1) + len(self._b1) > self.slots:
            self._b1.popitem(last=False)
        while (self._b1 or self._b2) and len(self) + len(self._b1) + len(self._b2) > 2 * self.slots:
            (self._b2 or self._b1).popitem(last=False)

    def discard(self, key: str) -> None:
        self._t1.pop(key, None)
        self._t2.pop(key, None)
        if key == self._newest:
            self._newest = None

    def __len__(self) -> int:
        return len(self._t1) + len(self._t2)

    def __contains__(self, key: object) -> bool:
        return key in self._t1 or key in self._t2


@lru_cache(maxsize=1 << 16)
def _hash128(key: str) -> int:
    """A stable hash (Python's own is salted per process, and replays must repeat)."""
    return int.from_bytes(hashlib.blake2b(key.encode(), digest_size=16).digest(), "little")


_HALVE = bytes(i >> 1 for i in range(256))


class FrequencySketch:
    """Count-min sketch of recent request counts: 4 rows of 4-bit counters (saturating at 15); after
    ``sample_size`` counted requests every counter is halved, so old popularity fades."""

    ROWS = 4
    MAX_COUNT = 15

    def __init__(self, width: int, sample_size: int) -> None:
        if width < 1 or width & (width - 1):
            raise ValueError(f"the sketch width must be a power of two, not {width}")
        self._mask = width - 1
        self._rows = [bytearray(width) for _ in range(self.ROWS)]
        self.sample_size = sample_size
        self._added = 0

    def _indexes(self, key: str) -> list[int]:
        h = _hash128(key)
        return [(h >> (32 * row)) & self._mask for row in range(self.ROWS)]

    def increment(self, key: str) -> None:
        added = False
        for row, index in zip(self._rows, self._indexes(key), strict=True):
            if row[index] < self.MAX_COUNT:
                row[index] += 1
                added = True
        self._added += added
        if self._added >= self.sample_size:
            self._rows = [row.translate(_HALVE) for row in self._rows]
            self._added //= 2

    def estimate(self, key: str) -> int:
        return min(row[index] for row, index in zip(self._rows, self._indexes(key), strict=True))


class TinyLFUPolicy(EvictionPolicy):
    """W-TinyLFU as Caffeine builds it: new keys enter a window LRU (1% of the slots, at least one); keys
    the window pushes out join a segmented LRU main space (probation, and protected: 80% of main, for keys
    hit again while on probation) as candidates; when room is needed a candidate competes with probation's
    least recent key, and the one with the lower estimated recent frequency (a sketch that counts every
    request, resident or not) leaves. The sketch has Caffeine's size: 16 counters per slot (at least 128)
    over 4 rows, halved every 10 requests per slot. Caffeine's hill climbing of the window size and its
    random admission against hash flooding are left out."""

    name = "tinylfu"

    def __init__(self, slots: int) -> None:
        super().__init__(slots)
        self._window_max = max(1, round(0.01 * slots))
        self._protected_max = int(0.8 * max(0, slots - self._window_max))
        self._window: OrderedDict[str, None] = OrderedDict()
        self._probation: OrderedDict[str, None] = OrderedDict()
        self._protected: OrderedDict[str, None] = OrderedDict()
        self._candidates: list[str] = []  # moved from the window to probation by the last insert
        self._newest: str | None = None
        self.sketch = FrequencySketch(width=4 * max(8, 1 << (slots - 1).bit_length()), sample_size=10 * slots)

    def hit(self, key: str) -> None:
        self.sketch.increment(key)
        if key in self._window:
            self._window.move_to_end(key)
        elif key in self._probation:
            del self._probation[key]
            self._protected[key] = None
            while len(self._protected) > self._protected_max:
                self._probation[self._protected.popitem(last=False)[0]] = None
        elif key in self._protected:
            self._protected.move_to_end(key)

    def insert(self, key: str) -> None:
        self.sketch.increment(key)
        self._newest = key
        self._window[key] = None
        self._candidates = []
        while len(self._window) > self._window_max:
            moved = self._window.popitem(last=False)[0]
            self._probation[moved] = None
            self._candidates.append(moved)

    def evict(self) -> str:
        victim = self._choose_victim()
        self.discard(victim)
        return victim

    def _choose_victim(self) -> str:
        while self._candidates and self._candidates[-1] not in self._probation:
            self._candidates.pop()
        oldest = next(iter(self._probation), None)
        if self._candidates and oldest is not None:
            candidate = self._candidates.pop()
            if candidate != oldest and self.sketch.estimate(candidate) > self.sketch.estimate(oldest):
                return oldest
            return candidate
        for space in (self._probation, self._protected):
            if space:
                return next(iter(space))
        victim = _oldest(self._window, self._newest) or self._newest
        if victim is None or victim not in self._window:
            raise KeyError("tinylfu: nothing to evict")
        return victim

    def discard(self, key: str) -> None:
        for space in (self._window, self._probation, self._protected):
            space.pop(key, None)
        if key == self._newest:
            self._newest = None

    def __len__(self) -> int:
        return len(self._window) + len(self._probation) + len(self._protected)

    def __contains__(self, key: object) -> bool:
        return key in self._window or key in self._probation or key in self._protected


POLICIES: dict[str, type[EvictionPolicy]] = {p.name: p for p in (LRUPolicy, LFUPolicy, ARCPolicy, TinyLFUPolicy)}


def make_policy(name: str, slots: int) -> EvictionPolicy:
    """The policy called ``name`` for a tier of about ``slots`` entries."""
    if name not in POLICIES:
        raise ValueError(f"unknown eviction policy {name!r}; choose one of {', '.join(POLICIES)}")
    return POLICIES[name](slots)
