"""Twin tests for the channel index: compiled ``_channels_c`` and pure ``_channels_py``.

Both implementations are imported directly and checked against ``fnmatch.fnmatchcase``
and against a naive model (a set of (subscriber, name) pairs). The "c" cases skip, with
the reason, where the compiled twin cannot be tested (``WEBSHOCKET_NO_EXTENSIONS=1``, or
not built); the compiled run (``WEBSHOCKET_REQUIRE_EXTENSIONS=1``) stops at session start
when it is not built.
"""

from __future__ import annotations

import enum
import fnmatch
import gc
import importlib
import itertools
import warnings
import weakref
from collections.abc import Iterable
from types import ModuleType
from typing import Any

import pytest
from helpers import NO_EXTENSIONS, impl_params
from hypothesis import given, settings
from hypothesis import strategies as st

TWIN = "channels"
IMPLS = impl_params(TWIN)  # "c" and "py", as the ``impl`` fixture; "c" skips, with the reason, when untestable
WILDCARDS = frozenset("*?[")

# fnmatch's regexes may warn about "possible nested set" for patterns such as "[[:"
pytestmark = pytest.mark.filterwarnings("ignore::FutureWarning")


def load(impl: str) -> ModuleType:
    """The twin ``impl`` ("py" or "c"); an ImportError fails the test."""
    return importlib.import_module(f"webshocket._channels_{impl}")


def fnmatchcase(name: str, pattern: str) -> bool:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        return fnmatch.fnmatchcase(name, pattern)


def model_is_pattern(name: str) -> bool:
    return not WILDCARDS.isdisjoint(name)


def matches(index: Any, channel: str, pattern: str) -> bool:
    """Whether ``index`` (holding a subscription to ``pattern`` only) delivers ``channel``."""
    if model_is_pattern(pattern):
        found = index.matching_patterns(channel)
        assert found in ((), (pattern,))
        assert (set(index.subscribers(channel)) == {"s"}) == bool(found)
        return bool(found)
    return bool(index.subscribers(channel))


def check_one(impl: str, pattern: str, names: Iterable[str]) -> None:
    index = load(impl).ChannelIndex()
    index.add("s", pattern)
    for name in names:
        assert matches(index, name, pattern) == fnmatchcase(name, pattern), (pattern, name)


if not NO_EXTENSIONS:

    def test_compiled_twin_is_built() -> None:
        module = load("c")
        assert module.__file__ is not None and not module.__file__.endswith(".py"), module.__file__


# ------------------------------------------------------------------ fnmatch edge cases

EDGE_CASES = [
    # (pattern, name, expected)
    ("a[", "a[", True),  # unmatched "[" is a literal
    ("a[bc", "a[bc", True),
    ("a[bc", "ab", False),
    ("[", "[", True),
    ("[!", "[!", True),
    ("[]", "[]", True),
    ("[!]", "[!]", True),
    ("[]]", "]", True),  # "]" first in a set is literal
    ("[]]", "a", False),
    ("[]a]", "a", True),
    ("[!]]", "]", False),
    ("[!]]", "a", True),
    ("[!]a]", "b", True),
    ("[a-z]", "m", True),
    ("[a-z]", "M", False),
    ("[a-z]", "-", False),
    ("[z-a]", "z", False),  # reversed range: matches nothing
    ("[z-a]", "a", False),
    ("[z-a]", "m", False),
    ("[z-a]", "-", False),
    ("[!z-a]", "m", True),  # ... so its negation matches anything
    ("[!z-a]", "\n", True),
    ("[-a]", "-", True),  # "-" at the start is literal
    ("[a-]", "-", True),  # "-" at the end is literal
    ("[a-]", "a", True),
    ("[a-]", "b", False),
    ("[!-a]", "-", False),
    ("[!-a]", "b", True),
    ("[a-c-e]", "d", False),
    ("[a-c-e]", "-", True),
    ("[a-cx-z]", "y", True),
    ("[b--]", "-", False),  # fnmatch drops the reversed range b..- and the "-" with it
    ("[b--]", "b", False),
    ("[--/]", ".", True),
    ("[!]-a]", "_", False),
    ("[!]-a]", "b", True),
    ("[z-a!b]", "b", False),  # fnmatch quirk: removing z-a leaves "!b", a negated set
    ("[z-a!b]", "c", True),
    ("[z-a!]", "q", True),
    ("[c-ba-x]", "m", True),
    ("[\\]", "\\", True),
    ("[\\-a]", "]", True),
    ("[^a]", "^", True),
    ("[^a]", "b", False),
    ("[&&]", "&", True),
    ("[a|b]", "|", True),
    ("[.]", ".", True),
    ("[.]", "a", False),
    ("a*", "a.b/c\nd", True),  # "*" crosses ".", "/" and newlines
    ("*c", "a.b/c\nc", True),
    ("a?c", "a\nc", True),  # "?" takes any one character, newline included
    ("a?c", "ac", False),
    ("*", "", True),
    ("**", "", True),
    ("?", "", False),
    ("*a*a*", "aa", True),
    ("*a*a*", "a", False),
    ("*ab*ab", "abxabab", True),
    ("*ab*ab", "abxab", True),
    ("*ab*ab", "abxa", False),
    ("a*b*c", "abbbc", True),
    ("a*b*c", "acb", False),
    ("é*😀", "é-😀", True),
    ("[é-ê]x", "êx", True),
    ("[😀-😂]", "😁", True),
    ("[😀-😂]", "😃", False),
    ("*[!😀]", "😀", False),
]


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize(("pattern", "name", "expected"), EDGE_CASES)
def test_fnmatch_edge_cases(impl: str, pattern: str, name: str, expected: bool) -> None:
    assert fnmatchcase(name, pattern) is expected  # the table itself is right
    index = load(impl).ChannelIndex()
    index.add("s", pattern)
    assert matches(index, name, pattern) is expected


BRACKET_ALPHABET = "!]-az^\\.["
SINGLE_CHARS = ["!", "]", "-", "a", "b", "m", "z", "^", "\\", ".", "[", "\n", "A", "~", ""]


@pytest.mark.parametrize("impl", IMPLS)
def test_bracket_expressions_exhaustive(impl: str) -> None:
    """Every bracket body of up to 4 characters over a nasty alphabet, on single characters."""
    names = [*SINGLE_CHARS, "]]", "a]", "-]", "!a"]
    for size in range(5):
        for body in itertools.product(BRACKET_ALPHABET, repeat=size):
            check_one(impl, "[" + "".join(body) + "]", names)
            check_one(impl, "x[" + "".join(body) + "]*", ["x" + n + "yz" for n in names])


# ------------------------------------------------------------------ random patterns against fnmatch

PATTERN_CHARS = st.sampled_from([*"*?[]!-abc.", "*", "?", "[", "]", "a", "x", "\\", "\n", "é", "😀"])
NAME_CHARS = st.sampled_from([*"abc.-]![x\\", "\n", "é", "😀"])
patterns = st.text(PATTERN_CHARS, min_size=1, max_size=12)
names = st.text(NAME_CHARS, max_size=14)


@st.composite
def near_names(draw: st.DrawFn, pattern: str) -> str:
    """A name built from ``pattern`` (wildcards replaced at random): matches far more often than random text."""
    out = []
    for ch in pattern:
        if ch == "*":
            out.append(draw(st.text(NAME_CHARS, max_size=3)))
        elif ch in "?[]!-":
            out.append(draw(st.one_of(NAME_CHARS, st.just(ch))))
        else:
            out.append(ch)
    return "".join(out)


@pytest.mark.parametrize("impl", IMPLS)
@settings(max_examples=400, deadline=None)
@given(data=st.data(), pattern=patterns)
def test_matching_against_fnmatch(impl: str, data: st.DataObject, pattern: str) -> None:
    candidates = data.draw(st.lists(st.one_of(names, near_names(pattern)), min_size=1, max_size=12))
    check_one(impl, pattern, [*candidates, pattern])


# ------------------------------------------------------------------ random subscribe/unsubscribe against a model

SUBSCRIBERS = st.sampled_from(["s0", "s1", "s2", 3])
SHORT_CHARS = st.sampled_from([*"ab.", "a", "b", "*", "?", "[", "]", "!", "-"])
channel_names = st.text(SHORT_CHARS, max_size=5)
operations = st.lists(
    st.one_of(
        st.tuples(st.just("add"), SUBSCRIBERS, channel_names),
        st.tuples(st.just("discard"), SUBSCRIBERS, channel_names),
        st.tuples(st.just("publish"), st.none(), st.text(st.sampled_from("ab.]!-["), max_size=5)),
    ),
    max_size=40,
)


class Model:
    """The obvious index: a set of (subscriber, name) pairs."""

    def __init__(self) -> None:
        self.pairs: set[tuple[Any, str]] = set()

    def tables(self) -> tuple[dict[str, set[Any]], dict[str, set[Any]]]:
        exact: dict[str, set[Any]] = {}
        pattern: dict[str, set[Any]] = {}
        for sub, name in self.pairs:
            (pattern if model_is_pattern(name) else exact).setdefault(name, set()).add(sub)
        return exact, pattern

    def matching_patterns(self, channel: str) -> set[str]:
        return {n for _, n in self.pairs if model_is_pattern(n) and fnmatchcase(channel, n)}

    def subscribers(self, channel: str) -> set[Any]:
        found = self.matching_patterns(channel)
        return {s for s, n in self.pairs if n in found or (n == channel and not model_is_pattern(n))}


def apply(index: Any, model: Model, op: str, sub: Any, name: str, impl: str) -> Any:
    """Run one operation on ``index`` and ``model``; check it and return what the index said."""
    if op == "add":
        expected = (sub, name) not in model.pairs
        model.pairs.add((sub, name))
        result = index.add(sub, name)
        assert result is expected
    elif op == "discard":
        expected = (sub, name) in model.pairs
        model.pairs.discard((sub, name))
        result = index.discard(sub, name)
        assert result is expected
    else:
        found = index.matching_patterns(name)
        assert isinstance(found, tuple)
        assert len(set(found)) == len(found)
        assert set(found) == model.matching_patterns(name)
        assert list(found) == [p for p in index.patterns if p in found]  # in the order of ``patterns``
        subscribers = index.subscribers(name)
        assert len(subscribers) == len(set(subscribers))
        assert set(subscribers) == model.subscribers(name)
        result = (sorted(found), sorted(map(str, subscribers)))
    exact, pattern = model.tables()
    assert index.channels == exact
    assert index.patterns == pattern
    return result


@pytest.mark.parametrize("impl", IMPLS)
@settings(max_examples=300, deadline=None)
@given(ops=operations)
def test_random_operations_against_model(impl: str, ops: list[tuple[str, Any, str]]) -> None:
    index = load(impl).ChannelIndex()
    model = Model()
    for op, sub, name in ops:
        apply(index, model, op, sub, name, impl)
    # publish to every name seen and to every pattern as a literal channel
    for _, _, name in ops:
        apply(index, model, "publish", None, name, impl)


if not NO_EXTENSIONS:

    @settings(max_examples=300, deadline=None)
    @given(ops=operations)
    def test_twins_agree(ops: list[tuple[str, Any, str]]) -> None:
        pure, compiled = load("py").ChannelIndex(), load("c").ChannelIndex()
        pure_model, compiled_model = Model(), Model()
        for op, sub, name in ops:
            assert apply(pure, pure_model, op, sub, name, "py") == apply(compiled, compiled_model, op, sub, name, "c")
            assert pure.channels == compiled.channels
            assert pure.patterns == compiled.patterns


# long names sharing prefixes and suffixes: the tries split, prune and merge their nodes
SEGMENTS = st.sampled_from(["user.", "us", "u", "er.", "1", "12", "*", "?", "[12]", ".x", "x", ".", "[!x]"])
long_names = st.lists(SEGMENTS, max_size=6).map("".join)
long_operations = st.lists(
    st.one_of(
        st.tuples(st.just("add"), SUBSCRIBERS, long_names),
        st.tuples(st.just("discard"), SUBSCRIBERS, long_names),
        st.tuples(st.just("publish"), st.none(), long_names.map(lambda n: n.replace("*", "1").replace("?", "x"))),
    ),
    max_size=60,
)


@pytest.mark.parametrize("impl", IMPLS)
@settings(max_examples=300, deadline=None)
@given(ops=long_operations)
def test_long_shared_names_against_model(impl: str, ops: list[tuple[str, Any, str]]) -> None:
    index = load(impl).ChannelIndex()
    model = Model()
    for op, sub, name in ops:
        apply(index, model, op, sub, name, impl)
    for _, _, name in ops:
        apply(index, model, "publish", None, name.replace("[12]", "2").replace("*", "").replace("?", "1"), impl)


@pytest.mark.parametrize("impl", IMPLS)
def test_subscriber_cycles_are_collected(impl: str) -> None:
    class Connection:
        index: Any = None

    index = load(impl).ChannelIndex()
    conn = Connection()
    conn.index = index
    index.add(conn, "room.*")
    index.add(conn, "room.1")
    ref = weakref.ref(conn)
    del conn, index
    gc.collect()
    assert ref() is None


@pytest.mark.parametrize("impl", IMPLS)
def test_reentrant_calls_from_the_garbage_collector(impl: str) -> None:
    """Finalizers may call back into the index while it builds a result: no stale state may leak out."""
    index = load(impl).ChannelIndex()
    pats = [f"room.{i}*" for i in range(40)] + ["room.*", "*.1"]
    for pattern in pats:
        index.add("s", pattern)
    calls = 0

    def callback(phase: str, info: dict[str, int]) -> None:
        nonlocal calls
        if phase != "start" or calls > 3000:
            return
        calls += 1
        index.subscribers("zzz.1")  # reuses any scratch state
        index.discard("s", "room.*")  # frees a compiled pattern ...
        index.add("s", "room.*")  # ... and compiles it again

    threshold = gc.get_threshold()
    gc.callbacks.append(callback)
    gc.set_threshold(1)
    try:
        for i in range(300):
            found = index.matching_patterns(f"room.{i % 50}.1")
            assert set(found) <= set(pats) and all(isinstance(p, str) for p in found)
    finally:
        gc.set_threshold(*threshold)
        gc.callbacks.remove(callback)
    assert calls > 0
    for i in range(50):
        channel = f"room.{i}.1"
        assert set(index.matching_patterns(channel)) == {p for p in pats if fnmatchcase(channel, p)}


# ------------------------------------------------------------------ module functions and API details


@pytest.mark.parametrize("impl", IMPLS)
@settings(max_examples=200, deadline=None)
@given(name=st.text(PATTERN_CHARS, max_size=10))
def test_is_pattern_and_literal_prefix(impl: str, name: str) -> None:
    module = load(impl)
    assert module.is_pattern(name) is model_is_pattern(name)
    cut = next((i for i, ch in enumerate(name) if ch in WILDCARDS), len(name))
    assert module.literal_prefix(name) == name[:cut]


@pytest.mark.parametrize("impl", IMPLS)
def test_module_api(impl: str) -> None:
    module = load(impl)
    assert module.CACHE_SIZE == 4096
    assert set(module.__all__) == {
        "CACHE_SIZE",
        "ChannelIndex",
        "escape",
        "is_pattern",
        "literal_name",
        "literal_prefix",
    }
    assert module.is_pattern(["*"]) is True  # any iterable of characters, as the pure twin
    assert module.literal_prefix(["a", "?"]) == ["a"]


@pytest.mark.parametrize("impl", IMPLS)
def test_subscribers_return_values(impl: str) -> None:
    index = load(impl).ChannelIndex()
    assert index.subscribers("news") == ()
    assert index.matching_patterns("news") == ()
    index.add("a", "news")
    assert index.subscribers("news") is index.channels["news"]  # no pattern at all: the internal set
    index.add("b", "n*")
    assert index.subscribers("nope") is index.patterns["n*"]  # one source only: its internal set
    assert index.subscribers("other") == ()
    assert set(index.subscribers("news")) == {"a", "b"}
    index.add("a", "*s")
    assert sorted(index.subscribers("news")) == ["a", "b"]  # each subscriber once
    assert set(index.matching_patterns("news")) == {"n*", "*s"}
    assert index.discard("a", "*s") is True
    assert index.discard("a", "*s") is False
    assert index.discard("zz", "news") is False
    assert index.discard("a", "never") is False
    assert index.matching_patterns("news") == ("n*",)


@pytest.mark.parametrize("impl", IMPLS)
def test_cache_is_invalidated(impl: str) -> None:
    index = load(impl).ChannelIndex()
    for i in range(50):  # enough patterns on one prefix that results get cached
        index.add("x", f"room.*.{i}[0-9]")
    assert index.matching_patterns("room.a.b") == ()
    index.add("late", "room.*")
    assert index.matching_patterns("room.a.b") == ("room.*",)
    assert set(index.subscribers("room.a.b")) == {"late"}
    index.add("later", "room.a.b")  # exact subscriptions are live, never cached
    assert set(index.subscribers("room.a.b")) == {"late", "later"}
    index.add("more", "room.*")  # a new subscriber of a known pattern
    assert set(index.subscribers("room.a.b")) == {"late", "later", "more"}
    index.discard("late", "room.*")
    index.discard("more", "room.*")
    assert index.matching_patterns("room.a.b") == ()
    assert set(index.subscribers("room.a.b")) == {"later"}
    # far more distinct channels than the cache holds
    for i in range(3 * 4096):
        assert index.matching_patterns(f"room.{i}.{i % 10}{i % 7}") == (f"room.*.{i % 10}[0-9]",)


@pytest.mark.parametrize("impl", IMPLS)
def test_many_patterns_share_prefixes_and_suffixes(impl: str) -> None:
    index = load(impl).ChannelIndex()
    pats = [f"user.{i}.*" for i in range(300)] + [f"*.alerts.{i}" for i in range(300)] + ["*", "user.*", "*.1"]
    for p in pats:
        index.add(p, p)
    channels = ["user.12.x", "user.120", "svc.alerts.7", "user.1", "x.1", "", "user.299.alerts.1"]
    for channel in channels:
        expected = {p for p in pats if fnmatchcase(channel, p)}
        assert set(index.matching_patterns(channel)) == expected
        assert set(index.subscribers(channel)) == expected
    for p in pats[::2]:  # unsubscribing prunes, and leaves the rest intact
        assert index.discard(p, p)
    for channel in channels:
        assert set(index.matching_patterns(channel)) == {p for p in pats[1::2] if fnmatchcase(channel, p)}
    for p in pats[1::2]:
        assert index.discard(p, p)
    assert index.patterns == {}
    assert all(index.matching_patterns(c) == () for c in channels)


class Room(str, enum.Enum):
    LOBBY = "lobby"
    ANY = "room.*"


@pytest.mark.parametrize("impl", IMPLS)
def test_str_subclasses(impl: str) -> None:
    index = load(impl).ChannelIndex()
    assert index.add("a", Room.LOBBY) is True
    assert index.add("a", "lobby") is False
    assert index.add("b", Room.ANY) is True
    assert set(index.subscribers(Room.LOBBY)) == {"a"}
    assert set(index.subscribers("room.1")) == {"b"}
    assert index.discard("b", "room.*") is True
    assert index.patterns == {}


class Hostile(str):
    """A str subclass whose methods lie: the index must read its characters, as the compiled twin does."""

    __slots__ = ()

    def __len__(self) -> int:
        return 0

    def __iter__(self) -> Any:
        return iter("*")

    def __contains__(self, item: object) -> bool:
        return True

    def __str__(self) -> str:
        return "*"

    def startswith(self, *args: Any) -> bool:
        return True

    def endswith(self, *args: Any) -> bool:
        return True


@pytest.mark.parametrize("impl", IMPLS)
def test_str_subclasses_are_read_by_their_characters(impl: str) -> None:
    module = load(impl)
    assert module.is_pattern(Hostile("room.1")) is False
    assert module.is_pattern(Hostile("room.?")) is True
    index = module.ChannelIndex()
    pattern = Hostile("room.*.x")
    index.add("a", pattern)
    index.add("b", Hostile("lobby"))
    index.add("c", Room.ANY)
    assert index.channels == {"lobby": {"b"}}
    assert index.patterns == {"room.*.x": {"a"}, "room.*": {"c"}}
    for channel in ("room.1.x", Hostile("room.1.x")):
        found = index.matching_patterns(channel)
        assert found == ("room.*.x", "room.*")
        assert found[0] is pattern and found[1] is Room.ANY  # the objects as subscribed
        assert set(index.subscribers(channel)) == {"a", "c"}
    for channel in ("room", Hostile("room"), Hostile("x.room.1.x"), "*"):
        assert index.matching_patterns(channel) == ()
    assert set(index.subscribers(Hostile("lobby"))) == {"b"}
    assert index.discard("a", "room.*.x") is True
    assert index.matching_patterns(Hostile("room.1.x")) == ("room.*",)


@pytest.mark.parametrize("impl", IMPLS)
def test_non_str_names_are_refused(impl: str) -> None:
    index = load(impl).ChannelIndex()
    for bad in (b"room.*", 5, None):
        with pytest.raises(TypeError):
            index.add("s", bad)
        with pytest.raises(TypeError):
            index.discard("s", bad)
        with pytest.raises(TypeError):
            index.matching_patterns(bad)
    assert index.subscribers(b"room") == ()  # no patterns at all: an exact lookup only
    index.add("s", "room.*")
    with pytest.raises(TypeError):
        index.subscribers(b"room")


# patterns with no literal prefix nor suffix (filed at the prefix root), with only one of them, or both
KEYLESS = ["*", "?", "??", "*?*", "[ab]*", "*[!x]", "?*[0-9]", "[é]*[😀]"]


@pytest.mark.parametrize("impl", IMPLS)
def test_keyless_and_keyed_patterns_together(impl: str) -> None:
    index = load(impl).ChannelIndex()
    pats = [*KEYLESS, "a*", "*b", "a*b", "ab", "a[b]", "[a]b*", "*[b]", "a?b", "é*", "*😀", "é?😀", "?é", "😀*😀"]
    for p in pats:
        index.add(p, p)
    channels = ["", "a", "b", "ab", "aab", "abb", "axb", "x", "9", "é", "é😀", "éx😀", "😀", "😀😀", "xé", "aé😀b"]
    for channel in channels:
        expected = [p for p in pats if model_is_pattern(p) and fnmatchcase(channel, p)]
        assert list(index.matching_patterns(channel)) == expected, channel  # in subscription order
        assert set(index.subscribers(channel)) == set(expected) | ({channel} if channel == "ab" else set())


@pytest.mark.parametrize("impl", IMPLS)
def test_order_is_subscription_order_across_both_tries(impl: str) -> None:
    """Results come in the order of ``patterns``, however the patterns are spread over the tries."""
    index = load(impl).ChannelIndex()
    pats = ["*.1", "user.*", "*", "user.*.1", "u*1", "*r.?", "[u]ser.?", "*1", "user.1", "us?r.*.1"]
    for p in pats:
        index.add("s", p)
    for channel in ("user.1", "user.1.1", "user.x"):
        expected = tuple(p for p in pats if model_is_pattern(p) and fnmatchcase(channel, p))
        assert len(expected) >= 4
        assert index.matching_patterns(channel) == expected
    index.discard("s", "user.*")
    index.add("s", "user.*")  # a new subscription: now the last one
    pats.remove("user.*")
    pats.append("user.*")
    assert list(index.patterns) == [p for p in pats if model_is_pattern(p)]
    for channel in ("user.1", "user.1.1", "user.x"):
        assert index.matching_patterns(channel) == tuple(p for p in index.patterns if fnmatchcase(channel, p))


def shared_patterns(count: int) -> list[str]:
    """Patterns crowding the same prefixes and suffixes: the tries split, share and merge nodes."""
    shapes = [
        "user.{}.*",
        "user.{}*",
        "user.*.{}",
        "*.{}.events",
        "*{}.events",
        "room.{}.?",
        "news.*.{}",
        "u[s]er.{}.[!x]*",
        "*ü.{}",
        "ü.{}*",
        "{}*{}",
    ]
    return [shapes[i % len(shapes)].format(i // len(shapes), i % 7) for i in range(count)]


def shared_channels() -> list[str]:
    names = ["", "user.", "user.1", "user.1.", "user.12.x", "user.1.events", "x.1.events", "x1.events", "room.3.a"]
    names += ["room.3.", "news.a.5", "news..5", "user.3.y", "user.3.x", "aü.4", "ü.41", "ü.", "4x4", "44", "user.*.1"]
    names += [f"user.{i}.{j}" for i in range(0, 40, 3) for j in ("x", "events", "5")]
    return names


def check_against_fnmatch(index: Any, live: list[str], channels: list[str]) -> None:
    for channel in channels:
        expected = [p for p in live if fnmatchcase(channel, p)]
        assert list(index.matching_patterns(channel)) == expected, channel
        assert set(index.subscribers(channel)) == set(expected)


def check_pure_tries(index: Any) -> None:
    """The pure twin's tries stay radix tries: no empty leaf, no pass-through node, keys as the path spells."""
    stack = [(index._prefix, "", False, True), (index._suffix, "", True, True)]
    filed = 0
    while stack:
        node, key, by_suffix, is_root = stack.pop()
        assert node.key == (key[::-1] if by_suffix else key)
        assert node.size == 1 + len(node.label) or is_root
        filed += len(node.entries or ())
        assert node.entries is None or node.entries
        if not is_root:
            assert node.entries or len(node.kids) > 1  # neither an empty leaf nor a pass-through node
        for c, kid in node.kids.items():
            stack.append((kid, key + c + kid.label, by_suffix, False))
    assert not index._suffix.entries
    literal = sum(len(entries) for entries in index._literals.values())
    assert all(index._literals.values())  # no empty list left behind
    assert filed + literal == len(index.patterns)


@pytest.mark.parametrize("impl", IMPLS)
def test_crowded_tries_subscribe_and_unsubscribe(impl: str) -> None:
    """Hundreds of patterns sharing prefixes and suffixes, removed in another order than added."""
    index = load(impl).ChannelIndex()
    pats = list(dict.fromkeys(shared_patterns(440)))
    channels = shared_channels()
    for p in pats:
        index.add(p, p)
    live = list(pats)
    check_against_fnmatch(index, live, channels)
    order = pats[1::2] + pats[::2][::-1]  # odd ones first, then the even ones from the end
    for step, p in enumerate(order):
        assert index.discard(p, p)
        live.remove(p)
        if impl == "py":
            check_pure_tries(index)
        if step % 37 == 0:
            check_against_fnmatch(index, live, channels)
            for again in live[:3]:  # re-subscribing moves a pattern to the end of the order
                index.discard(again, again)
                index.add(again, again)
                live.remove(again)
                live.append(again)
            check_against_fnmatch(index, live, channels)
    assert index.patterns == {}
    assert all(index.matching_patterns(c) == () for c in channels)
    if impl == "py":
        assert index._prefix.kids == {} and index._suffix.kids == {} and index._prefix.entries is None
        assert index._literals == {}


if not NO_EXTENSIONS:

    def test_twins_agree_on_crowded_tries() -> None:
        pure, compiled = load("py").ChannelIndex(), load("c").ChannelIndex()
        pats = shared_patterns(600)
        for p in pats:
            assert pure.add("s", p) == compiled.add("s", p)
        channels = shared_channels() + [p.replace("*", "x").replace("?", "y") for p in pats[::5]]
        for channel in channels:
            assert pure.matching_patterns(channel) == compiled.matching_patterns(channel), channel
        for p in pats[::3]:
            assert pure.discard("s", p) == compiled.discard("s", p)
        for channel in channels:
            assert pure.matching_patterns(channel) == compiled.matching_patterns(channel), channel


# segments with non-ASCII characters (2- and 4-byte ones) and shared pieces
UNICODE_SEGMENTS = st.sampled_from(["é", "éa", "😀", "a😀", "ü.", ".ü", "a", "ab", "*", "?", "[é😀]", "[!a]", "."])
unicode_names = st.lists(UNICODE_SEGMENTS, max_size=6).map("".join)
unicode_operations = st.lists(
    st.one_of(
        st.tuples(st.just("add"), SUBSCRIBERS, unicode_names),
        st.tuples(st.just("discard"), SUBSCRIBERS, unicode_names),
        st.tuples(st.just("publish"), st.none(), unicode_names.map(lambda n: n.replace("*", "é").replace("?", "😀"))),
    ),
    max_size=60,
)


@pytest.mark.parametrize("impl", IMPLS)
@settings(max_examples=300, deadline=None)
@given(ops=unicode_operations)
def test_non_ascii_names_against_model(impl: str, ops: list[tuple[str, Any, str]]) -> None:
    index = load(impl).ChannelIndex()
    model = Model()
    for op, sub, name in ops:
        apply(index, model, op, sub, name, impl)
        if impl == "py":
            check_pure_tries(index)
    for _, _, name in ops:
        apply(index, model, "publish", None, name.replace("[é😀]", "😀").replace("[!a]", "b"), impl)


# ------------------------------------------------------------------ literal names and one-name patterns

LITERAL_CHARS = st.sampled_from([*"ab.*?[]!-\\", "é", "😀"])


@pytest.mark.parametrize("impl", IMPLS)
@settings(max_examples=300, deadline=None)
@given(name=st.text(LITERAL_CHARS, max_size=8), others=st.lists(st.text(LITERAL_CHARS, max_size=8), max_size=10))
def test_escape_matches_the_name_and_nothing_else(impl: str, name: str, others: list[str]) -> None:
    module = load(impl)
    escaped = module.escape(name)
    assert fnmatchcase(name, escaped)
    assert module.literal_name(escaped) == name
    assert module.is_pattern(escaped) is model_is_pattern(name)
    index = module.ChannelIndex()
    index.add("s", escaped)
    for other in [*others, name + "x", name[:-1], escaped]:
        assert fnmatchcase(other, escaped) is (other == name)
        assert (set(index.subscribers(other)) == {"s"}) is (other == name), other
        assert index.matching_patterns(other) == ((escaped,) if other == name and escaped != name else ())


@pytest.mark.parametrize("impl", IMPLS)
@settings(max_examples=300, deadline=None)
@given(pattern=patterns, channels=st.lists(st.text(NAME_CHARS, max_size=6), max_size=10))
def test_literal_name_is_the_only_name_a_pattern_matches(impl: str, pattern: str, channels: list[str]) -> None:
    single = load(impl).literal_name(pattern)
    if single is None:
        assert model_is_pattern(pattern)
        return
    assert fnmatchcase(single, pattern)
    for channel in channels:
        assert fnmatchcase(channel, pattern) is (channel == single)


def escaped(name: str) -> str:
    return load("py").escape(name)


literal_operations = st.lists(
    st.one_of(
        st.tuples(st.just("add"), SUBSCRIBERS, st.one_of(channel_names, channel_names.map(escaped))),
        st.tuples(st.just("discard"), SUBSCRIBERS, st.one_of(channel_names, channel_names.map(escaped))),
        st.tuples(st.just("publish"), st.none(), channel_names),
    ),
    max_size=40,
)


@pytest.mark.parametrize("impl", IMPLS)
@settings(max_examples=300, deadline=None)
@given(ops=literal_operations)
def test_literal_patterns_against_model(impl: str, ops: list[tuple[str, Any, str]]) -> None:
    """Escaped names (one-name patterns, filed in a dict) mixed with names and patterns of every kind."""
    index = load(impl).ChannelIndex()
    model = Model()
    for op, sub, name in ops:
        apply(index, model, op, sub, name, impl)
        if impl == "py":
            check_pure_tries(index)
    for _, _, name in ops:
        apply(index, model, "publish", None, name, impl)
        apply(index, model, "publish", None, load("py").literal_name(name) or name, impl)


@pytest.mark.parametrize("impl", IMPLS)
def test_one_name_patterns_keep_subscription_order_and_cache(impl: str) -> None:
    index = load(impl).ChannelIndex()
    pats = ["room*", "room[[]1]", "r?om[1]", "room[1]", "[r]oom[[]1]", "*]", "room[[]1[]]"]
    for p in pats:
        index.add(p, p)
    for channel in ("room[1]", "room1", "room[1]]", "roo"):
        expected = tuple(p for p in pats if fnmatchcase(channel, p))
        assert index.matching_patterns(channel) == expected, channel
        assert index.matching_patterns(channel) == expected  # again, from the cache
        assert set(index.subscribers(channel)) == set(expected)
    assert index.matching_patterns("room[1]") == ("room*", "room[[]1]", "[r]oom[[]1]", "*]", "room[[]1[]]")
    index.discard("room[[]1]", "room[[]1]")
    assert index.matching_patterns("room[1]") == ("room*", "[r]oom[[]1]", "*]", "room[[]1[]]")
    index.add("room[[]1]", "room[[]1]")  # a new subscription: now the last one
    assert index.matching_patterns("room[1]") == ("room*", "[r]oom[[]1]", "*]", "room[[]1[]]", "room[[]1]")
    for p in pats:
        index.discard(p, p)
    assert index.patterns == {} and index.matching_patterns("room[1]") == ()
    if impl == "py":
        assert index._literals == {}


if not NO_EXTENSIONS:

    @settings(max_examples=300, deadline=None)
    @given(name=st.text(PATTERN_CHARS, max_size=10))
    def test_twins_agree_on_escape_and_literal_name(name: str) -> None:
        pure, compiled = load("py"), load("c")
        assert pure.escape(name) == compiled.escape(name)
        assert pure.literal_name(name) == compiled.literal_name(name)
        assert compiled.literal_name(Room.LOBBY) is Room.LOBBY and compiled.escape(Room.LOBBY) is Room.LOBBY
        assert pure.literal_name(Room.LOBBY) is Room.LOBBY and pure.escape(Room.LOBBY) is Room.LOBBY


@pytest.mark.parametrize("impl", IMPLS)
def test_one_name_patterns_alone_then_with_walked_ones(impl: str) -> None:
    """With one-name patterns only a publish is one lookup; a walked pattern coming and going changes nothing."""
    index = load(impl).ChannelIndex()
    index.add("lit", "a[*]")
    index.add("lit2", "[a]*")  # "a" then a star: a real pattern, walked
    index.discard("lit2", "[a]*")
    index.add("one", "a[[]")
    for _ in range(2):
        assert index.matching_patterns("a*") == ("a[*]",)
        assert index.matching_patterns("a[") == ("a[[]",)
        assert index.matching_patterns("ab") == ()
        assert index.subscribers("a*") is index.patterns["a[*]"]  # one source: its own set
        index.add("exact", "a*x")  # walked
        assert set(index.subscribers("a*x")) == {"exact"}
        assert set(index.subscribers("a*")) == {"lit"}
        assert index.matching_patterns("a*") == ("a[*]",)
        index.discard("exact", "a*x")
    index.add("ch", "a*")
    index.add("ch", "a[")
    assert index.channels == {}  # both are patterns
    index.add("ch", "a")
    assert set(index.subscribers("a")) == {"ch"} and set(index.subscribers("a*")) == {"lit", "ch"}


@pytest.mark.parametrize("impl", IMPLS)
def test_reentrant_calls_with_one_name_patterns_only(impl: str) -> None:
    """A finalizer replacing the very entry a one-name lookup is reading: no stale or freed state leaks out."""
    index = load(impl).ChannelIndex()
    names = [f"room[[]{i}]" for i in range(20)]
    for name in names:
        index.add("s", name)
        index.add("t", name)
    calls = 0

    def callback(phase: str, info: dict[str, int]) -> None:
        nonlocal calls
        if phase != "start" or calls > 3000:
            return
        calls += 1
        index.discard("s", "room[[]1]")
        index.discard("t", "room[[]1]")  # the pattern goes: its entry is removed
        index.add("s", "room[[]1]")  # ... and comes back
        index.add("u", "r[o]om[[]1]")  # a second one-name pattern for the same name
        index.discard("u", "r[o]om[[]1]")

    threshold = gc.get_threshold()
    gc.callbacks.append(callback)
    gc.set_threshold(1)
    try:
        for _ in range(300):
            found = index.matching_patterns("room[1]")
            assert found in ((), ("room[[]1]",), ("room[[]1]", "r[o]om[[]1]")) and all(
                isinstance(p, str) for p in found
            )
            assert set(index.subscribers("room[1]")) <= {"s", "t", "u"}
    finally:
        gc.set_threshold(*threshold)
        gc.callbacks.remove(callback)
    assert calls > 0
    assert index.matching_patterns("room[1]") == ("room[[]1]",)
    assert index.matching_patterns("room[2]") == ("room[[]2]",)
