"""The world's language: names, things, and the phrase table the generator tells its stories with.

Kept apart from ``generator`` so the language can grow (more phrasings, more things) without touching
the graph logic. Each phrase-table entry is ``key: alternative | alternative``; a line that starts
with ``|`` continues the previous key. Question sentences (``.q``, ``.ask``) use ``{S} {O} {P}`` for
the owner as subject, object and possessive (a pronoun when the owner was the last subject) and
``[verb]`` for a verb conjugated for a group owner; solution lines (``.l``) always use names (``{N}``)
and take ``{e}`` (the expression) and ``{a}`` (the annotation with the restated result). ``.g`` names
a relation's given and ``.n`` its node, for the oracle's critiques. When a key has as many
alternatives as the relation's ``.q`` key, the same alternative is taken (share: friends / piles).

    >>> T["cmp.l"]
    ('{N} has {e} = {a} {noun}.',)
"""

from __future__ import annotations

import re


def _words(text: str) -> tuple[str, ...]:
    return tuple(text.split())


FEMALE = _words(
    "Mia Ann Emma Lily Zoe Sara Nina Ella Ava Lucy Rosa Kate Jane Amy Ivy Tara Maya Lena Ruby Gia"
)
MALE = _words("Tom Ben Sam Leo Max Jack Noah Owen Eli Liam Jake Omar Ravi Paul Carl Dan Ivan Hugo Finn Luke")
PRONOUNS = {"f": ("she", "her", "her"), "m": ("he", "him", "his"), "p": ("they", "them", "their")}
THINGS = ["a hat", "a book", "a kite", "a game", "a ticket", "lunch", "a pen", "a scarf"]
COLORS = [("red", "blue"), ("green", "yellow"), ("white", "black"), ("big", "small"), ("pink", "purple")]

# item, items, box, boxes, "e" if edible (items kept in boxes, sold, shared, eaten)
ITEMS = [
    tuple(entry.split(":"))
    for entry in _words("""
    pencil:pencils:box:boxes: crayon:crayons:box:boxes: apple:apples:basket:baskets:e
    cookie:cookies:jar:jars:e marble:marbles:bag:bags: sticker:stickers:pack:packs:
    egg:eggs:carton:cartons:e book:books:shelf:shelves: shell:shells:bucket:buckets:
    bead:beads:jar:jars: flower:flowers:vase:vases: cupcake:cupcakes:tray:trays:e
    orange:oranges:crate:crates:e stamp:stamps:album:albums: candy:candies:bag:bags:e
    muffin:muffins:tray:trays:e banana:bananas:bunch:bunches:e ball:balls:bin:bins:
    card:cards:deck:decks: button:buttons:jar:jars: rock:rocks:bucket:buckets:
    peach:peaches:basket:baskets:e carrot:carrots:bag:bags:e balloon:balloons:pack:packs:
    cherry:cherries:bowl:bowls:e toy:toys:chest:chests:
    """)
]

# Chain relations: name, operation, kinds of quantity it applies to, rule for its given k, kind of the
# result ("-": unchanged), weight. The "cmp" relations bring in a new owner ("Tom has 3 times as many").
CHAIN = {
    name: (op, tuple(kinds.split(",")), rule, None if new == "-" else new, float(w))
    for name, op, kinds, rule, new, w in (line.split() for line in """
    add   + item,box,money add   -     1
    sub   - item,box,money sub   -     1
    half  / item           two   -     0.5
    open  * box            mul   item  1
    sell  * item           mul   money 0.8
    pack  / item           div   box   1.2
    buy   / money          div   item  1.2
    share / item           div   each  1.5
    cmp*  * item,money     times -     0.5
    cmp+  + item,money     add   -     0.4
    cmp-  - item,money     sub   -     0.4
    cmp/  / item,money     two   -     0.2
    """.strip().splitlines())
}  # fmt: skip

_TABLE = """
start.item.q: {S} [has] {k} {items}. | {S} [collects] {k} {items}. | {S} [starts] with {k} {items}.
start.box.q: {S} [has] {k} {boxes} of {items}. | {S} [buys] {k} {boxes} of {items}.
start.money.q: {S} [has] {k} dollars. | {S} [saves] {k} dollars.
add.item.q: {S} [buys] {k} more {items}. | {S} [finds] {k} more {items}.
  | {S} [gets] {k} more {items} from {F}. | {F} gives {O} {k} more {items}.
add.box.q: {S} [buys] {k} more {boxes} of {items}. | {S} [gets] {k} more {boxes} of {items} from {F}.
add.money.q: {S} [earns] {k} more dollars. | {F} gives {O} {k} dollars. | {S} [gets] {k} dollars from {F}.
add.l: {N} [has] {e} = {a} {noun} now. | Now {N} [has] {e} = {a} {noun}. | {N} [has] {e} = {a} {noun}.
add.g: the {noun} {N} [gets]
sub.item.q: {S} [gives] {k} {items} to {F}. | {S} [loses] {k} {items}. | {S} [sells] {k} of the {items}.
  | {S} [gives] {k} of {P} {items} to {F}.
sub.edible.q: {S} [gives] {k} {items} to {F}. | {S} [eats] {k} of the {items}.
  | {S} [sells] {k} of the {items}. | {S} [gives] {k} of {P} {items} to {F}.
sub.box.q: {S} [gives] {k} {boxes} to {F}. | {S} [sells] {k} of the {boxes}.
sub.money.q: {S} [spends] {k} dollars on {thing}. | {S} [pays] {k} dollars for {thing}.
sub.l: {N} [has] {e} = {a} {noun} left. | {N} [has] {e} = {a} {noun} now. | Now {N} [has] {e} = {a} {noun}.
sub.g: the {noun} {N} [gives] away
cmp*.q: {S} has {k} times as many {noun} as {M}.
twice.q: {S} has twice as many {noun} as {M}.
cmp+.q: {S} has {k} more {noun} than {M}.
cmp-.q: {S} has {k} fewer {noun} than {M}.
cmp/.q: {S} has half as many {noun} as {M}.
cmp.l: {N} has {e} = {a} {noun}.
cmp.g: how many times as many {noun} {N} has | how many more {noun} {N} has | how many fewer {noun} {N} has
  | half
half.q: {S} [gives] half of the {items} to {F}. | {S} [uses] half of the {items}.
half.l: {N} [has] {e} = {a} {items} left. | {N} [keeps] {e} = {a} {items}.
half.g: half
open.q: Each {box} holds {k} {items}. | There are {k} {items} in each {box}.
open.l: {N} [has] {e} = {a} {items}. | The {boxes} hold {e} = {a} {items}.
open.g: the {items} in each {box}
sell.q: {S} [sells] each {item} for {k} dollars. | {S} [sells] the {items} for {k} dollars each.
sell.l: {N} [earns] {e} = {a} dollars. | {N} [makes] {e} = {a} dollars.
sell.ask: How many dollars [does] {S} earn?
sell.g: the price of each {item}
pack.q: {S} [puts] the {items} into {boxes} of {k}. | {S} [packs] {k} {items} in each {box}.
pack.l: {N} [fills] {e} = {a} {boxes}. | {N} [needs] {e} = {a} {boxes}.
pack.ask: How many {boxes} [does] {S} fill?
pack.g: the {items} in each {box}
buy.q: {S} [spends] all {P} money on {items} that cost {k} dollars each.
buy.l: {N} [buys] {e} = {a} {items}.
buy.ask: How many {items} [does] {S} buy?
buy.g: the price of each {item}
share.q: {S} [shares] the {items} equally among {k} friends.
  | {S} [splits] the {items} equally into {k} piles. | {S} [gives] the {items} equally to {k} kids.
share.l: Each friend gets {e} = {a} {items}. | Each pile has {e} = {a} {items}.
  | Each kid gets {e} = {a} {items}.
share.ask: How many {items} does each friend get? | How many {items} are in each pile?
  | How many {items} does each kid get?
share.n: the {items} each friend gets | the {items} in each pile | the {items} each kid gets
share.g: the number of friends | the number of piles | the number of kids
ask.now: How many {noun} [does] {S} have now? | How many {noun} [does] {S} have?
ask.has: How many {noun} [does] {S} have?
node.n: {N}'s {noun}
side.q: {S} has {x} {boxes} with {y} {items} in each.
side.l: {N} has {e} = {a} {items}.
side.g: {N}'s {boxes} | the {items} per {box}
has.q: {S} has {k} {noun}.
together.q: {S} put their {noun} together.
together.l: Together they have {e} = {a} {noun}. | {N} have {e} = {a} {noun} in total.
together.ask: How many {noun} do {S} have together? | How many {noun} do {S} have in total?
diff.l: {N} has {e} = {a} more {noun} than {Y}.
diff.ask: How many more {noun} does {S} have than {Y}?
colors.q: Each {box} has {x} {c1} {items} and {y} {c2} {items}.
colors.l: Each {box} has {e} = {a} {items}.
colors.g: the {c1} {items} per {box} | the {c2} {items} per {box}
missing.q: Each {box} should hold {x} {items}, but {y} are missing from each {box}.
missing.l: There are {e} = {a} {items} in each {box}.
missing.g: the {items} a full {box} holds | the {items} missing per {box}
class.q: There are {x} boys and {y} girls in {P} class.
class.q2: {S} [shares] the {items} equally among the kids.
class.l: There are {e} = {a} kids.
class.l2: Each kid gets {e} = {a} {items}.
class.g: the boys in the class | the girls in the class
distract.q: {S} has {k} {noun}. | {S} [is] {k} years old. | {S} also [has] {k} {other}.
  | {P} house is {k} meters from the park.
distract.g: {N}'s {noun} | {N}'s age in years | {N}'s {other} | the distance from {N}'s house to the park
"""


def _parse(text: str) -> dict[str, tuple[str, ...]]:
    table: dict[str, tuple[str, ...]] = {}
    key = ""
    for line in text.strip().splitlines():
        if line.lstrip().startswith("|"):
            rest = line.lstrip()[1:]
        else:
            key, rest = line.split(":", 1)
            table[key] = ()
        table[key] += tuple(alt.strip() for alt in rest.split("|"))
    return table


T = _parse(_TABLE)


def conjugate(text: str, plural: bool) -> str:
    """Resolve the ``[verb]`` marks: as written, or for a plural subject ("[has]" -> "have")."""
    if not plural:
        return text.replace("[", "").replace("]", "")
    return re.sub(
        r"\[(\w+)\]", lambda m: {"has": "have", "does": "do", "is": "are"}.get(m[1], m[1][:-1]), text
    )
