"""The synthetic GSM world: grade-school word problems generated from small computation graphs.

Each problem is a graph of givens and operation nodes (+ - * / with exact division, every value a
positive integer <= ``max_value``), told as a short templated story (``phrases``) and solved by a
reference in the GSM8K format exactly: one line per node with a calculator annotation, then ``#### N``.

    >>> p = generate_split(WorldConfig(n_train=1), "train")[0]
    >>> p.id, p.solution.splitlines()[-1] == f"#### {p.answer}"
    ('world-train-000000', True)

Stories follow an owner's quantity through chain relations (buys 7 more, gives 5 to Tom, each box holds
4, sells each for 3 dollars, Tom has 3 times as many, shares them among 4 friends) and join threads into
trees and DAGs (together, how many more, boxes of 3 red and 5 blue, shared among the boys and girls of a
class). Distractor sentences carry numbers the solution must not use. ``meta`` holds the graph; a ref
is ``"g<i>"`` (the i-th given) or ``"n<j>"`` (the j-th node), node j is solution line j, the last node
is the answer::

    {"givens": [{"name": "Mia's pencils", "value": 12, "distractor": false}, ...],
     "nodes": [{"op": "+", "args": ["g0", "g1"], "value": 19, "name": "Mia's pencils"}, ...],
     "n_ops": 2}

Splits are disjoint by construction: a hash of the normalised question picks its split (1/16 of the
question space is test, 1/16 OOD), so each split is generated alone. Departure from GSM8K: templated
language (several phrasings per relation) that a tiny model learns from scratch on a CPU; all numbers
are digits except "twice" and "half", whose 2 the reference still writes.
"""

from __future__ import annotations

import hashlib
import random
import re
from collections.abc import Callable
from dataclasses import dataclass, replace
from fractions import Fraction
from typing import NamedTuple

from prmkit.calculator import format_number
from prmkit.types import Problem
from prmkit.world.phrases import CHAIN, COLORS, FEMALE, ITEMS, MALE, PRONOUNS, THINGS, T, conjugate

SPLITS = ("train", "test", "ood")
_BUCKETS = 16  # question hash mod 16: 0 -> test, 1 -> ood, the rest -> train


class _Who(NamedTuple):
    name: str
    g: str  # "f", "m", or "p" for a group (plural verbs)


@dataclass(frozen=True)
class _St:
    """A thread's current quantity: the ref holding it, its owner and what it counts."""

    ref: str
    value: int
    who: _Who
    kind: str  # "item", "box" (containers of items), "money", or "each" (a share or difference; final)
    it: tuple[str, ...]
    ask: tuple[str, ...] = T["ask.now"]
    packed: bool = False  # boxes that came from packing items: opening them again is pointless

    @property
    def words(self) -> dict[str, str]:
        item, items, box, boxes, _ = self.it
        noun = {"box": boxes, "money": "dollars"}.get(self.kind, items)
        return {"item": item, "items": items, "box": box, "boxes": boxes, "noun": noun}


@dataclass(frozen=True)
class WorldConfig:
    """Knobs of the world. ``op_weights`` weigh + - * / in that order (``ops`` lists the allowed
    ones); ``tree_weight`` weighs the relations that join two threads (trees, DAGs) against chain
    steps; ``max_start`` bounds a thread's first quantity, ``max_addend`` what is added or taken away,
    ``max_factor`` multipliers and divisors, ``max_value`` every given and intermediate value."""

    seed: int = 0
    n_train: int = 20000
    n_test: int = 500
    n_ood: int = 300
    min_ops: int = 2
    max_ops: int = 4
    ood_min_ops: int = 5
    ood_max_ops: int = 6
    max_value: int = 200
    max_start: int = 60
    max_addend: int = 40
    max_factor: int = 10
    ops: str = "+-*/"
    op_weights: tuple[float, ...] = (1.0, 1.0, 1.0, 1.0)
    tree_weight: float = 1.0
    distractor_prob: float = 0.3
    max_distractors: int = 1
    pronoun_prob: float = 0.6

    def __post_init__(self) -> None:
        if isinstance(self.op_weights, list):  # from YAML
            object.__setattr__(self, "op_weights", tuple(self.op_weights))
        ws = self.op_weights if isinstance(self.op_weights, tuple) else ()
        checks = {
            "seed": isinstance(self.seed, int),
            "n_train": self.n_train >= 0, "n_test": self.n_test >= 0, "n_ood": self.n_ood >= 0,
            "min_ops": 2 <= self.min_ops <= 8, "max_ops": self.min_ops <= self.max_ops <= 8,
            "ood_min_ops": 2 <= self.ood_min_ops <= 8,
            "ood_max_ops": self.ood_min_ops <= self.ood_max_ops <= 8,
            "max_value": self.max_value >= 20, "max_start": 5 <= self.max_start <= self.max_value,
            "max_addend": 2 <= self.max_addend <= self.max_value, "max_factor": 2 <= self.max_factor <= 100,
            "ops": bool(self.ops) and set(self.ops) <= set("+-*/") and len(set(self.ops)) == len(self.ops),
            "op_weights": len(ws) == 4 and all(isinstance(w, int | float) and w >= 0 for w in ws)
                and sum(w for op, w in zip("+-*/", ws, strict=True) if op in self.ops) > 0,
            "tree_weight": self.tree_weight >= 0, "distractor_prob": 0 <= self.distractor_prob <= 1,
            "max_distractors": 1 <= self.max_distractors <= 3, "pronoun_prob": 0 <= self.pronoun_prob <= 1,
        }  # fmt: skip
        for name, ok in checks.items():
            if not ok:
                raise ValueError(f"WorldConfig.{name} is invalid: {getattr(self, name)!r}")

    def weight(self, op: str) -> float:
        return float(self.op_weights["+-*/".index(op)]) if op in self.ops else 0.0


class _Story:
    """One problem under construction: givens, nodes, question sentences and solution lines.

    A relation method takes the current quantity and the number of operations left and returns the
    new quantity with the operations it used, or None (changing nothing but names drawn) when it does
    not apply or its numbers would leave the bounds.
    """

    def __init__(self, rng: random.Random, cfg: WorldConfig):
        self.rng, self.cfg = rng, cfg
        self.givens: list[dict] = []
        self.nodes: list[dict] = []
        self.sents: list[tuple[str, _Who | None, dict]] = []
        self.lines: list[str] = []
        self.names: set[str] = set()
        self.history: list[_St] = []  # earlier owners' last quantities: partners for "together"

    def person(self) -> _Who:
        g = self.rng.choice("fm")
        name = self.rng.choice([n for n in (FEMALE if g == "f" else MALE) if n not in self.names])
        self.names.add(name)
        return _Who(name, g)

    def given(self, value: int, name: str, distractor: bool = False) -> str:
        self.givens.append({"name": name, "value": value, "distractor": distractor})
        return f"g{len(self.givens) - 1}"

    def two(self, key: str, x: int, y: int, **kw: str) -> list[str]:
        return [self.given(v, name.format(**kw)) for v, name in zip((x, y), T[key], strict=True)]

    def value(self, ref: str) -> int:
        return (self.givens if ref[0] == "g" else self.nodes)[int(ref[1:])]["value"]

    def say(self, tpl: str, who: _Who | None, **kw: object) -> None:
        if "{F}" in tpl:
            kw["F"] = self.person().name
        self.sents.append((tpl, who, kw))

    def node(self, op: str, a: str, b: str, name: str, line: str, who: _Who, **kw: str) -> str:
        va, vb = self.value(a), self.value(b)
        value = {"+": va + vb, "-": va - vb, "*": va * vb, "/": va // vb}[op]
        assert 0 < value <= self.cfg.max_value and (op != "/" or va % vb == 0), (op, va, vb)
        self.nodes.append({"op": op, "args": [a, b], "value": value, "name": name.format(N=who.name, **kw)})
        e, r = f"{va}{op}{vb}", format_number(Fraction(value))
        self.lines.append(conjugate(line.format(N=who.name, e=e, a=f"<<{e}={r}>>{r}", **kw), who.g == "p"))
        return f"n{len(self.nodes) - 1}"

    def render(self) -> str:
        out, last = [], None
        for tpl, who, kw in self.sents:
            s = o = p = ""
            if who is not None:
                pron = who == last and self.rng.random() < self.cfg.pronoun_prob
                s, o, p = PRONOUNS[who.g] if pron else (who.name, who.name, who.name + "'s")
                p = PRONOUNS[who.g][2] if "{S}" in tpl else p  # "Mia spends all her money"
            text = conjugate(tpl.format(S=s, O=o, P=p, **kw), who is not None and who.g == "p")
            out.append(text[0].upper() + text[1:])
            last = who if "{S}" in tpl else None if "{O}" in tpl else last
        return " ".join(out)

    def start(self) -> _St:
        rng, cfg = self.rng, self.cfg
        kind = rng.choices(("item", "box", "money"), (0.55, 0.3, 0.15))[0]
        st = _St("", 0, self.person(), kind, rng.choice(ITEMS))
        k = rng.randint(2, min(12, cfg.max_start)) if kind == "box" else rng.randint(2, cfg.max_start)
        self.say(rng.choice(T[f"start.{kind}.q"]), st.who, k=k, **st.words)
        return replace(st, ref=self.given(k, f"{st.who.name}'s {st.words['noun']}"), value=k)

    def ks(self, rule: str, kind: str, v: int) -> list[int]:
        """The values a relation's given may take on the quantity ``v``."""
        cfg, add = self.cfg, 10 if kind == "box" else self.cfg.max_addend  # boxes come in small numbers
        if rule in ("add", "sub"):
            return list(range(2, min(add, cfg.max_value - v if rule == "add" else v - 2) + 1))  # no "1 bags"
        if rule in ("mul", "times"):
            return list(range(2, min(cfg.max_factor if rule == "mul" else 5, cfg.max_value // v) + 1))
        if rule == "two":
            return [2] * (v % 2 == 0 and v >= 4)
        return [d for d in range(2, min(cfg.max_factor, v - 1) + 1) if v % d == 0]

    def relate(self, st: _St, left: int, name: str) -> tuple[_St, int] | None:
        """A chain relation (see ``phrases.CHAIN``): the current quantity op a new given k."""
        op, kinds, rule, kind, _ = CHAIN[name]
        if st.kind not in kinds or (name == "open" and st.packed) or (name == "share" and left != 1):
            return None
        if not (ks := self.ks(rule, st.kind, st.value)):
            return None
        rng, k, w, cmp = self.rng, self.rng.choice(ks), st.words, name.startswith("cmp")
        q = f"{name}.{st.kind}.q" if f"{name}.{st.kind}.q" in T else f"{name}.q"
        q = "sub.edible.q" if q == "sub.item.q" and st.it[4] else q
        q = "twice.q" if name == "cmp*" and k == 2 and rng.random() < 0.5 else q
        i, n = rng.randrange(len(T[q])), len(T[q])

        def pick(key: str) -> str:  # the same alternative as the question's when the counts agree
            return T[key][i] if len(T[key]) == n else rng.choice(T[key])

        who = self.person() if cmp else st.who
        ask = (pick(f"{name}.ask"),) if f"{name}.ask" in T else T["ask.has" if cmp or kind else "ask.now"]
        packed = name == "pack" or (st.packed and not kind)
        new = replace(st, who=who, kind=kind or st.kind, packed=packed, ask=ask)
        self.say(T[q][i], None if name == "open" else who, k=k, M=st.who.name, thing=rng.choice(THINGS), **w)
        g_name = (T["cmp.g"]["*+-/".index(op)] if cmp else pick(f"{name}.g")).format(N=who.name, **w)
        g = self.given(k, conjugate(g_name, who.g == "p"))
        node_name = pick("share.n") if name == "share" else T["node.n"][0]
        ref = self.node(op, st.ref, g, node_name, pick("cmp.l" if cmp else f"{name}.l"), who, **new.words)
        if cmp:
            self.history.append(st)
        return replace(new, ref=ref, value=self.value(ref)), 1

    def partner(self, st: _St, costs: range, ok: Callable[[int], bool]) -> tuple[_St, int] | None:
        """Another owner's quantity of the same thing whose value is ``ok``, at a cost in ``costs``: an
        earlier owner's or a new owner's (0 operations), or a new owner's boxes of items (1)."""
        rng, cfg, w = self.rng, self.cfg, st.words
        old = [
            h for h in self.history if h.kind == st.kind and h.it == st.it and h.who.g != "p" and ok(h.value)
        ]
        if old and 0 in costs and rng.random() < 0.7:
            self.history.remove(found := rng.choice(old))
            return found, 0
        who = self.person()
        if st.kind == "item" and 1 in costs and (0 not in costs or rng.random() < 0.4):
            x, y = rng.randint(2, 12), rng.randint(2, cfg.max_factor)
            if x * y > cfg.max_value or not ok(x * y):
                return None
            self.say(T["side.q"][0], who, x=x, y=y, **w)
            gx, gy = self.two("side.g", x, y, N=who.name, **w)
            ref = self.node("*", gx, gy, T["node.n"][0], T["side.l"][0], who, **w)
            return _St(ref, x * y, who, "item", st.it), 1
        if 0 not in costs or not (vals := [v for v in range(2, cfg.max_start + 1) if ok(v)]):
            return None
        self.say(T["has.q"][0], who, k=(k := rng.choice(vals)), **w)
        return _St(self.given(k, f"{who.name}'s {w['noun']}"), k, who, st.kind, st.it), 0

    def together(self, st: _St, left: int) -> tuple[_St, int] | None:
        if st.kind not in ("item", "money") or st.who.g == "p":
            return None
        if (found := self.partner(st, range(left), lambda v: v + st.value <= self.cfg.max_value)) is None:
            return None
        told = [who for _, who, _ in self.sents]
        a, b = sorted((found[0], st), key=lambda s: told.index(s.who))  # in the order the story met them
        group = _Who(f"{a.who.name} and {b.who.name}", "p")
        if found[1] + 1 < left:
            self.say(T["together.q"][0], group, **st.words)
        line = self.rng.choice(T["together.l"])
        ref = self.node("+", a.ref, b.ref, "the {noun} of {N}", line, group, **st.words)
        return replace(st, ref=ref, value=a.value + b.value, who=group, ask=T["together.ask"]), found[1] + 1

    def more_than(self, st: _St, left: int) -> tuple[_St, int] | None:
        if st.kind not in ("item", "money") or st.who.g == "p":
            return None
        avoid = {0, 1} | {g["value"] for g in self.givens}  # a difference that was given is no question
        found = self.partner(st, range(left - 1, left), lambda v: abs(v - st.value) not in avoid)
        if found is None:
            return None
        x, y = sorted((found[0], st), key=lambda s: -s.value)
        name = "how many more {noun} {N} has than " + y.who.name
        ref = self.node("-", x.ref, y.ref, name, T["diff.l"][0], x.who, Y=y.who.name, **st.words)
        ask = tuple(a.replace("{Y}", y.who.name) for a in T["diff.ask"])
        return replace(st, ref=ref, value=x.value - y.value, who=x.who, ask=ask), left  # the last operation

    def per_box(self, st: _St, left: int) -> tuple[_St, int] | None:
        """Boxes times a per-box count that is itself computed (red + blue, or full - missing)."""
        rng, cfg, w = self.rng, self.cfg, st.words
        per = list(range(4, min(cfg.max_value // st.value, 2 * cfg.max_factor) + 1))
        if st.kind != "box" or st.packed or left < 2 or not per:
            return None
        p, each = rng.choice(per), f"the {w['items']} in each {w['box']}"
        if rng.random() < 0.6 and "+" in cfg.ops:
            x, (c1, c2) = rng.randint(2, p - 2), rng.choice(COLORS)
            self.say(T["colors.q"][0], None, x=x, y=p - x, c1=c1, c2=c2, **w)
            gx, gy = self.two("colors.g", x, p - x, c1=c1, c2=c2, **w)
            per_ref = self.node("+", gx, gy, each, T["colors.l"][0], st.who, **w)
        elif "-" in cfg.ops:
            y = rng.randint(2, 9)
            self.say(T["missing.q"][0], None, x=p + y, y=y, **w)
            gx, gy = self.two("missing.g", p + y, y, **w)
            per_ref = self.node("-", gx, gy, each, T["missing.l"][0], st.who, **w)
        else:
            return None
        ref = self.node("*", st.ref, per_ref, "{N}'s {items}", T["open.l"][0], st.who, **w)
        return replace(st, ref=ref, value=st.value * p, kind="item", ask=T["ask.has"]), 2

    def group_share(self, st: _St, left: int) -> tuple[_St, int] | None:
        """Items shared equally among the kids of a class, counted as boys + girls."""
        ds = [d for d in range(4, min(31, st.value)) if st.value % d == 0]
        if st.kind != "item" or left != 2 or not ds or "+" not in self.cfg.ops:
            return None
        d, w = self.rng.choice(ds), st.words
        x = self.rng.randint(2, d - 2)
        self.say(T["class.q"][0], st.who, x=x, y=d - x)
        self.say(T["class.q2"][0], st.who, **w)
        gx, gy = self.two("class.g", x, d - x)
        kids = self.node("+", gx, gy, "the kids in the class", T["class.l"][0], st.who)
        ref = self.node("/", st.ref, kids, "the {items} each kid gets", T["class.l2"][0], st.who, **w)
        return replace(st, ref=ref, value=st.value // d, kind="each", ask=(T["share.ask"][2],)), 2

    def grow(self, n_ops: int) -> _St | None:
        """Apply weighted random relations until ``n_ops`` nodes exist; None at a dead end."""
        cfg, rng, tw = self.cfg, self.rng, self.cfg.tree_weight
        moves = [(lambda s, n, r=name: self.relate(s, n, r), c[0], c[4]) for name, c in CHAIN.items()]
        moves += [(self.together, "+", tw), (self.more_than, "-", 0.8 * tw), (self.per_box, "*", 1.5 * tw),
                  (self.group_share, "/", tw)]  # fmt: skip
        weights = [w * cfg.weight(op) for _, op, w in moves]
        st, left = self.start(), n_ops
        while left > 0:
            order = sorted((rng.random() ** (1 / w), i) for i, w in enumerate(weights) if w > 0)
            for _, i in reversed(order):  # a weighted random order (Efraimidis-Spirakis keys)
                if (done := moves[i][0](st, left)) is not None:
                    st, left = done[0], left - done[1]
                    break
            else:
                return None
        return st

    def distract(self, nouns: list[str]) -> None:
        """Insert distractor sentences (never after the question) and record their givens."""
        rng, cfg = self.rng, self.cfg
        people = [w for _, w, _ in self.sents if w is not None and w.g != "p"]
        others = [it[1] for it in ITEMS if it[1] not in nouns and it[3] not in nouns]
        taken = {x["value"] for x in self.givens + self.nodes}
        for _ in range(rng.randint(1, cfg.max_distractors)):
            i = rng.randrange(4)
            who = self.person() if i == 0 else rng.choice(people)
            free = [v for v in range(2, cfg.max_start + 1) if v not in taken]  # no value of the graph
            kw = {"k": rng.choice(free), "noun": rng.choice(nouns), "other": rng.choice(others)}
            at = rng.randint(0, len(self.sents) - 1)
            if at < len(self.sents) - 1 and not re.search(r"\{[SO]\}", self.sents[at][0]):
                at += 1  # a sentence without a subject ("Each box holds 4") stays after its subject's
            self.sents.insert(at, (T["distract.q"][i], who, kw))
            self.given(kw["k"], T["distract.g"][i].format(N=who.name, **kw), distractor=True)


def _norm(question: str) -> str:
    return " ".join(question.lower().split())


def _bucket(question: str) -> int:
    return int.from_bytes(hashlib.blake2b(_norm(question).encode(), digest_size=8).digest(), "big") % _BUCKETS


def _one(rng: random.Random, cfg: WorldConfig, n_ops: int) -> tuple[str, str, str, dict] | None:
    """(question, answer, solution, meta) of a fresh problem with ``n_ops`` operations, or None."""
    story = _Story(rng, cfg)
    if (st := story.grow(n_ops)) is None:
        return None
    story.say(rng.choice(st.ask), st.who, **st.words)
    if rng.random() < cfg.distractor_prob:
        nouns = sorted({s.words["noun"] for s in [st, *story.history]} - {"dollars"}) or [st.words["items"]]
        story.distract(nouns)
    meta = {"givens": story.givens, "nodes": story.nodes, "n_ops": len(story.nodes)}
    answer = format_number(Fraction(st.value))
    return story.render(), answer, "\n".join([*story.lines, f"#### {answer}"]), meta


def generate_split(cfg: WorldConfig, split: str) -> list[Problem]:
    """The problems of one split, deterministic given ``cfg``; no question is shared across splits."""
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; valid splits: {', '.join(SPLITS)}")
    n = {"train": cfg.n_train, "test": cfg.n_test, "ood": cfg.n_ood}[split]
    lo, hi = (cfg.ood_min_ops, cfg.ood_max_ops) if split == "ood" else (cfg.min_ops, cfg.max_ops)
    mine = {"test": lambda b: b == 0, "ood": lambda b: b == 1}.get(split, lambda b: b >= 2)
    rng = random.Random(f"prmkit-world/{cfg.seed}/{split}")
    seen: set[str] = set()
    out: list[Problem] = []
    for tries in range(50 * _BUCKETS * (n + 10)):
        if len(out) == n:
            return out
        if tries == 20_000 and not out:
            break  # a config that (almost) never yields a problem
        made = _one(rng, cfg, rng.randint(lo, hi))
        if made is None or (key := _norm(made[0])) in seen or not mine(_bucket(key)):
            continue
        seen.add(key)
        out.append(Problem(f"world-{split}-{len(out):06d}", *made[:3], "world", "gsm8k", split, made[3]))
    raise RuntimeError(f"made only {len(out)} of {n} distinct {split} problems; loosen the WorldConfig")


def make_world(cfg: WorldConfig) -> dict[str, list[Problem]]:
    """All three splits: ``{"train": [...], "test": [...], "ood": [...]}``."""
    return {split: generate_split(cfg, split) for split in SPLITS}
