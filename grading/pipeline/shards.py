"""Which students a run grades: `autograde --shard I/N` grades a fixed 1/N of them, to be merged by `collect`.

A student belongs to shard 1 + (sha256 of the id mod N), so the split never depends on who else submitted, and a
student added later never moves anyone. Entries that are not submissions are split the same way, by name.
"""
import hashlib


class ShardError(ValueError):
    """A shard specification or a set of shards that cannot be used as asked."""


def parse_shard(text):
    """(index, count) from "I/N" with 1 <= I <= N."""
    try:
        index, count = (int(part) for part in text.split("/"))
    except ValueError:
        raise ShardError(f"--shard takes I/N, for example 2/8, not {text!r}") from None
    if not 1 <= index <= count:
        raise ShardError(f"--shard {text}: I must be between 1 and N")
    return index, count


def in_shard(name, shard):
    index, count = shard
    return int(hashlib.sha256(name.encode()).hexdigest(), 16) % count == index - 1
