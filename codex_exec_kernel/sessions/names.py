"""Memorable session ids: ``adjective-noun``, like ``brave-otter``.

People type these ids in a terminal and say them aloud, so they are short lowercase
words instead of hex. Uniqueness is not decided here: the store reserves an id by
creating its directory (atomic), and asks for another name when it is taken.
"""

from __future__ import annotations

import random
from collections.abc import Callable

ADJECTIVES = (
    "amber", "bold", "brave", "brisk", "calm", "clever", "cosmic", "crisp", "curious",
    "dapper", "eager", "fancy", "fierce", "gentle", "glad", "golden", "grand", "happy",
    "hazy", "jolly", "keen", "kind", "lively", "lucky", "mellow", "merry", "mighty",
    "misty", "nimble", "noble", "plucky", "polite", "proud", "quick", "quiet", "rapid",
    "rosy", "royal", "rustic", "shiny", "silent", "silver", "sleepy", "snowy", "spry",
    "steady", "sunny", "swift", "tidy", "tiny", "vivid", "warm", "wise", "witty", "zesty",
)  # fmt: skip
NOUNS = (
    "badger", "beacon", "bison", "canyon", "cedar", "comet", "condor", "coral", "crane",
    "dolphin", "falcon", "fern", "finch", "fox", "gecko", "glacier", "harbor", "hawk",
    "heron", "island", "koala", "lagoon", "lark", "lemur", "lynx", "maple", "meadow",
    "meteor", "moose", "nebula", "orca", "otter", "owl", "panda", "pebble", "pine",
    "puffin", "quartz", "raven", "reef", "river", "robin", "salmon", "sparrow", "spruce",
    "summit", "thistle", "tiger", "tundra", "walrus", "willow", "wombat", "yak", "zebra",
)  # fmt: skip


def memorable_name(rng: random.Random) -> str:
    return f"{rng.choice(ADJECTIVES)}-{rng.choice(NOUNS)}"


def generate(is_taken: Callable[[str], bool], rng: random.Random | None = None) -> str:
    """A name for which ``is_taken`` is false: two words, with a number once they run short."""
    rng = rng or random.SystemRandom()
    for _ in range(64):
        name = memorable_name(rng)
        if not is_taken(name):
            return name
    while True:  # ~3000 combinations are mostly taken: widen with a number
        name = f"{memorable_name(rng)}-{rng.randrange(10, 100_000)}"
        if not is_taken(name):
            return name
