"""A plain-Python model of shared/lua/apply_batch.lua: the counting rules, written plainly."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

# (offset, op "s"/"c", user, reaction, client_ts or None)
Event = tuple[int, str, str, str, int | None]


@dataclass
class ApplyResult:
    """What one apply call reports, in the shape the script returns."""

    applied: int = 0
    noop: int = 0
    duplicate: int = 0
    stale: int = 0
    deltas: dict[str, int] = field(default_factory=dict)
    correctives: list[tuple[str, str, int]] = field(default_factory=list)


@dataclass
class ArticleModel:
    """One article's counts, readers (user -> (reaction or '', client_ts)) and fence."""

    counts: Counter[str] = field(default_factory=Counter)
    readers: dict[str, tuple[str, int | None]] = field(default_factory=dict)
    fence: tuple[int, int] | None = None

    def apply(self, partition: int, events: list[Event]) -> ApplyResult:
        """Apply one chunk exactly as the script does."""
        result = ApplyResult()
        last = self.fence[1] if self.fence and self.fence[0] == partition else -1
        restate: list[str] = []
        top = None
        for offset, op, user, reaction, ts in events:
            cur_reaction, cur_ts = self.readers.get(user, ("", None))
            older = ts is not None and cur_ts is not None and ts < cur_ts
            if offset <= last:
                result.duplicate += 1
                if older and user not in restate:
                    restate.append(user)
                continue
            top = offset
            if older:
                result.stale += 1
                if user not in restate:
                    restate.append(user)
                continue
            new_ts = ts if ts is not None else (cur_ts + 1 if cur_ts is not None else None)
            target = reaction if op == "s" else ""
            if target != cur_reaction:
                if cur_reaction:
                    self.counts[cur_reaction] -= 1
                    result.deltas[cur_reaction] = result.deltas.get(cur_reaction, 0) - 1
                if target:
                    self.counts[target] += 1
                    result.deltas[target] = result.deltas.get(target, 0) + 1
                result.applied += 1
            else:
                result.noop += 1
            if target == "" and new_ts is None:
                self.readers.pop(user, None)
            else:
                self.readers[user] = (target, new_ts)
        if top is not None:
            self.fence = (partition, top)
        result.deltas = {r: d for r, d in result.deltas.items() if d}
        for user in restate:
            reaction, ts = self.readers[user]
            assert ts is not None
            result.correctives.append((user, reaction, ts))
        self.counts = +self.counts
        return result
