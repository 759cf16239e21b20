"""The project's own sentence generator: grammar templates over `corpus.vocabulary`.

Sentences are plain English with numbers, times and years written as words, so what is
written is exactly what a voice says. `generate_sentences(n, seed)` is deterministic:
the same (n, seed) gives the same list on every machine and Python version (only
`random.Random` with an integer seed is used, never `hash()`).
"""

from __future__ import annotations

import random
from collections.abc import Callable

from corpus import vocabulary as V
from corpus.text import normalize_text, number_to_words, year_to_words

_VOWEL_SOUND_EXCEPTIONS = {"hour", "honest", "heir"}
_CONSONANT_SOUND_EXCEPTIONS = {"unit", "university", "one", "european", "useful", "usual"}


def plural(noun: str) -> str:
    if noun in V.IRREGULAR_PLURALS:
        return V.IRREGULAR_PLURALS[noun]
    if noun.endswith(("s", "x", "z", "ch", "sh")):
        return noun + "es"
    if noun.endswith("y") and noun[-2:-1] not in "aeiou":
        return noun[:-1] + "ies"
    return noun + "s"


def article(word: str) -> str:
    first = word.split()[0].lower()
    vowel = first[0] in "aeiou"
    if first in _VOWEL_SOUND_EXCEPTIONS:
        vowel = True
    if first in _CONSONANT_SOUND_EXCEPTIONS:
        vowel = False
    return f"{'an' if vowel else 'a'} {word}"


def _third_person(verb: str) -> str:
    if verb.endswith(("s", "x", "z", "ch", "sh", "o")):
        return verb + "es"
    if verb.endswith("y") and verb[-2] not in "aeiou":
        return verb[:-1] + "ies"
    return verb + "s"


class _Slots:
    """Random slot fillers drawn from one `random.Random`."""

    def __init__(self, rng: random.Random) -> None:
        self.r = rng

    def pick(self, items: tuple) -> str:
        return self.r.choice(items)

    def name(self) -> str:
        return self.pick(V.NAMES)

    def place(self) -> str:
        return self.pick(V.PLACES)

    def noun(self) -> str:
        return self.pick(V.NOUNS)

    def person(self) -> str:
        return self.pick(V.PEOPLE)

    def adj(self) -> str:
        return self.pick(V.ADJECTIVES)

    def adv(self) -> str:
        return self.pick(V.ADVERBS)

    def time(self) -> str:
        return self.pick(V.TIMES)

    def prep(self) -> str:
        return self.pick(V.PREPOSITIONS)

    def feeling(self) -> str:
        return self.pick(V.FEELINGS)

    def verb(self) -> tuple[str, str]:
        return self.r.choice(V.VERBS)

    def intransitive(self) -> tuple[str, str]:
        return self.r.choice(V.INTRANSITIVE)

    def the_np(self) -> str:
        """'the red kettle', 'the kettle' or 'the baker's kettle'."""
        roll = self.r.random()
        if roll < 0.45:
            return f"the {self.adj()} {self.noun()}"
        if roll < 0.85:
            return f"the {self.noun()}"
        return f"{self.name()}'s {self.noun()}"

    def a_np(self) -> str:
        return article(f"{self.adj()} {self.noun()}" if self.r.random() < 0.6 else self.noun())

    def count(self, low: int = 2, high: int = 99) -> str:
        n = self.r.randint(low, high) if self.r.random() < 0.8 else self.r.randint(100, 9999)
        return number_to_words(n)

    def year(self) -> str:
        return year_to_words(self.r.randint(1800, 2030))

    def clock(self) -> str:
        hour = number_to_words(self.r.randint(1, 12))
        return self.r.choice(
            (
                f"{hour} o'clock",
                f"half past {hour}",
                f"quarter to {hour}",
                f"quarter past {hour}",
                f"{hour} {number_to_words(self.r.randint(10, 59))}",
            )
        )


def _t_past(s: _Slots) -> str:
    return f"{s.name()} {s.verb()[1]} {s.the_np()} {s.time()}."


def _t_past_place(s: _Slots) -> str:
    return f"The {s.person()} {s.verb()[1]} {s.a_np()} in {s.place()}."


def _t_future(s: _Slots) -> str:
    return f"We will {s.verb()[0]} {s.the_np()} {s.prep()} {s.the_np()} {s.time()}."


def _t_question(s: _Slots) -> str:
    return f"Did you {s.verb()[0]} {s.the_np()} {s.prep()} the {s.noun()}?"


def _t_where(s: _Slots) -> str:
    word = s.r.choice(("Where", "Why", "When", "How"))
    return f"{word} did {s.name()} {s.verb()[0]} {s.the_np()}?"


def _t_imperative(s: _Slots) -> str:
    return f"Please {s.verb()[0]} {s.the_np()} {s.adv()} and give it to {s.name()}."


def _t_count(s: _Slots) -> str:
    return f"There are {s.count()} {plural(s.noun())} {s.prep()} the {s.adj()} {s.noun()}."


def _t_measure(s: _Slots) -> str:
    singular, many = s.r.choice(V.MEASURES)
    unit = many if s.r.random() < 0.9 else singular
    amount = s.count() if unit == many else "one"
    return f"The {s.noun()} weighed about {amount} {unit}, said the {s.person()}."


def _t_year(s: _Slots) -> str:
    return f"In {s.year()}, {s.name()} {s.intransitive()[1]} all the way to {s.place()}."


def _t_clock(s: _Slots) -> str:
    return f"The train to {s.place()} leaves at {s.clock()}, so do not {s.intransitive()[0]}."


def _t_feeling(s: _Slots) -> str:
    return f"{s.name()} was {s.feeling()} to find {s.a_np()} {s.prep()} the {s.noun()}."


def _t_said(s: _Slots) -> str:
    return f'"{s.the_np().capitalize()} is far too {s.adj()}," said {s.name()} {s.adv()}.'


def _t_because(s: _Slots) -> str:
    return (
        f"Because the {s.noun()} was {s.adj()}, the {s.person()} {s.intransitive()[1]} {s.adv()}."
    )


def _t_habit(s: _Slots) -> str:
    return f"My {s.person()} {s.adv()} {_third_person(s.verb()[0])} {s.the_np()} {s.time()}."


def _t_compare(s: _Slots) -> str:
    return f"This {s.noun()} is not as {s.adj()} as the one we saw in {s.place()}."


def _t_list(s: _Slots) -> str:
    a, b, c = plural(s.noun()), plural(s.noun()), plural(s.noun())
    return f"{s.name()} packed {a}, {b} and {c} for the trip to {s.place()}."


def _t_exclaim(s: _Slots) -> str:
    return f"What {s.a_np()} that was!"


def _t_while(s: _Slots) -> str:
    return (
        f"While {s.name()} {s.intransitive()[1]}, {s.name()} {s.verb()[1]} {s.the_np()} "
        f"{s.prep()} the {s.noun()}."
    )


def _t_if(s: _Slots) -> str:
    return f"If the {s.noun()} is {s.adj()}, we should {s.verb()[0]} it {s.time()}."


def _t_could(s: _Slots) -> str:
    return f"Could you tell me whether the {s.person()} {s.verb()[1]} {s.the_np()}?"


def _t_short(s: _Slots) -> str:
    return f"{s.name()} {s.intransitive()[1]} {s.adv()}."


def _t_age(s: _Slots) -> str:
    return f"The {s.person()} from {s.place()} is {number_to_words(s.r.randint(18, 95))} years old."


def _t_price(s: _Slots) -> str:
    return (
        f"{s.a_np().capitalize()} costs {number_to_words(s.r.randint(2, 500))} dollars "
        f"at the market {s.time()}."
    )


TEMPLATES: tuple[Callable[[_Slots], str], ...] = (
    _t_past,
    _t_past_place,
    _t_future,
    _t_question,
    _t_where,
    _t_imperative,
    _t_count,
    _t_measure,
    _t_year,
    _t_clock,
    _t_feeling,
    _t_said,
    _t_because,
    _t_habit,
    _t_compare,
    _t_list,
    _t_exclaim,
    _t_while,
    _t_if,
    _t_could,
    _t_short,
    _t_age,
    _t_price,
)


def generate_sentences(n: int, seed: int = 0) -> list[str]:
    """`n` distinct normalised sentences, deterministic for `seed`."""
    rng = random.Random(seed)
    slots = _Slots(rng)
    seen: set[str] = set()
    out: list[str] = []
    attempts = 0
    while len(out) < n:
        attempts += 1
        if attempts > 50 * n + 1000:
            raise RuntimeError(f"could not generate {n} distinct sentences")
        raw = rng.choice(TEMPLATES)(slots)
        sentence = normalize_text(raw[0].upper() + raw[1:])
        if sentence not in seen:
            seen.add(sentence)
            out.append(sentence)
    return out
