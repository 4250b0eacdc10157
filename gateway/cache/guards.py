"""Cheap lexical checks that must agree before a semantic hit is served.

An embedding says two texts are *about* the same thing; it is weak at the details that change the
answer: a number ("5 km" / "50 km"), a negation ("…with sugar" / "…without sugar"), a direction
("USD to EUR" / "EUR to USD"), one language, unit or currency for another. Each guard returns the
name of the first check that fails, or None; measured in docs/caching.md ("Semantic tier: quality").

Every guard is symmetric and a text always agrees with itself.
"""

from __future__ import annotations

import re
from collections import Counter
from decimal import Decimal, InvalidOperation

GuardName = str  # "number" | "negation" | "order" | "entity"



def _wordset(spaced: str) -> frozenset[str]:
    return frozenset(spaced.split())


_NUMBER = re.compile(r"(?<![\w.])-?\d+(?:,\d{3})+(?:\.\d+)?(?!\w)|(?<![\w.,])-?\d+(?:\.\d+)?")
_WORD = re.compile(r"->|=>|→|[a-z0-9]+(?:['.#+][a-z0-9]+)*[+#]*", re.IGNORECASE)

_NUMBER_WORDS = {
    "zero": 0, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6, "seven": 7, "eight": 8,
    "nine": 9, "ten": 10, "eleven": 11, "twelve": 12, "thirteen": 13, "fourteen": 14, "fifteen": 15,
    "sixteen": 16, "seventeen": 17, "eighteen": 18, "nineteen": 19, "twenty": 20, "thirty": 30,
    "forty": 40, "fifty": 50, "sixty": 60, "seventy": 70, "eighty": 80, "ninety": 90, "hundred": 100,
    "dozen": 12, "twice": 2,
}

_NEGATIONS = frozenset({
    "not", "no", "never", "none", "nothing", "nobody", "nowhere", "neither", "nor", "without", "cannot",
    "except", "excluding", "unlike",
})

#: Words whose two sides a swap changes the meaning of: "A to B", "A than B", "A into B".
_DIRECTIONAL = frozenset({
    "to", "into", "onto", "from", "than", "vs", "versus", "over", "before", "after", "against",
    "->", "=>", "→",
})

_STOPWORDS = _wordset("""
a an the is are was were be been being am do does did doing have has had having i me my we our you your
he she it its they them their this that these those what which who whom whose how why when where there
here of in on at by for with about as and or but if then so such can could should would will shall may
might must please tell explain show give me let lets let's any some all each every just also very really
""")

#: Names that change the answer when one replaces another, whatever their case in the text.
_ENTITY_WORDS = _wordset("""
python java javascript typescript rust go golang ruby php perl kotlin swift scala haskell c c++ c# f# r
julia lua dart elixir erlang clojure bash powershell sql matlab fortran cobol zig nim ocaml objective-c
html css node.js react vue angular django flask fastapi rails spring
usd eur gbp jpy cny inr chf cad aud btc eth dollars dollar euros euro pounds pound yen yuan rupees
km kilometers kilometres miles mile meters metres meter metre feet foot inches inch cm centimeters mm
kg kilograms kilogram grams gram lbs lb ounces ounce celsius fahrenheit kelvin liters litres liter
litre gallons gallon ml seconds second minutes minute hours hour days day weeks week months month
years year mb gb tb kb bytes bits mbps megabytes megabyte gigabytes gigabyte kilobytes kilobyte terabytes
terabyte cups cup tablespoons tablespoon teaspoons teaspoon yards yard acres acre hectares hectare mph kph
km/h m/s
monday tuesday wednesday thursday friday saturday sunday january february march april june july
august september october november december
linux windows macos ios android mysql postgres postgresql sqlite mongodb redis aws gcp azure
""")


def _number_value(raw: str) -> Decimal | None:
    try:
        return Decimal(raw.replace(",", "")).normalize()
    except InvalidOperation:
        return None


def numbers(text: str) -> Counter[Decimal]:
    """Every number in ``text``, digits or (single) number words, as normalised values."""
    found: Counter[Decimal] = Counter()
    for raw in _NUMBER.findall(text):
        value = _number_value(raw)
        if value is not None:
            found[value] += 1
    for word in words(text):
        if word in _NUMBER_WORDS:
            found[Decimal(_NUMBER_WORDS[word]).normalize()] += 1
    return found


def words(text: str) -> list[str]:
    """Word tokens, lower-cased except single capital letters ("A", "B": variables, not articles);
    contractions are split so "don't" gives "do" and "not"."""
    tokens: list[str] = []
    for raw in _WORD.findall(text.replace("\u2019", "'")):
        if len(raw) == 1 and raw.isupper() and raw != "I":
            tokens.append(raw)
            continue
        token = raw.lower()
        if token.endswith("n't"):
            stem = {"can't": "can", "won't": "will", "shan't": "shall"}.get(token, token[:-3])
            tokens.extend((stem, "not"))
        elif "'" in token:
            tokens.append(token.split("'")[0])
        else:
            tokens.append(token)
    return tokens


def negation_count(text: str) -> int:
    """Negations, not counting a reply's opening "No," (an answer to a previous turn, not a negation)."""
    tokens = words(re.sub(r"^\s*no\s*[,.!:;-]", "", text, flags=re.IGNORECASE))
    return sum(1 for w in tokens if w in _NEGATIONS)


def _content(tokens: list[str]) -> list[str]:
    return [t for t in tokens if t not in _STOPWORDS and t not in _DIRECTIONAL and t not in _NEGATIONS]


def _directional_pairs(tokens: list[str], window: int = 4, reach: int = 2) -> set[tuple[str, str, str]]:
    """(left, marker, right) for each directional word and each of the ``reach`` nearest content words
    on either side of it (within ``window`` tokens): "US dollars to euros" gives (dollars, to, euros)
    and (us, to, euros)."""
    pairs: set[tuple[str, str, str]] = set()
    skip = _STOPWORDS | _DIRECTIONAL
    for i, token in enumerate(tokens):
        if token not in _DIRECTIONAL:
            continue
        lefts = [t for t in reversed(tokens[max(0, i - window):i]) if t not in skip][:reach]
        rights = [t for t in tokens[i + 1:i + 1 + window] if t not in skip][:reach]
        pairs.update((left, token, right) for left in lefts for right in rights if left != right)
    return pairs


def _swapped_around_middle(ca: list[str], cb: list[str]) -> bool:
    """Two words that trade places around the same words: "Germany declared war on France" and
    "France declared war on Germany". Moving a phrase ("chocolate cake recipe" / "recipe for chocolate
    cake") or swapping two neighbours ("git commit" / "commit in git") does not count."""
    once_a = {w for w, n in Counter(ca).items() if n == 1}
    once_b = {w for w, n in Counter(cb).items() if n == 1}
    shared = once_a & once_b
    pos_a = {w: i for i, w in enumerate(ca) if w in shared}
    pos_b = {w: i for i, w in enumerate(cb) if w in shared}
    for x in shared:
        for y in shared:
            if pos_a[x] < pos_a[y] and pos_b[y] < pos_b[x]:
                middle_a = ca[pos_a[x] + 1:pos_a[y]]
                middle_b = cb[pos_b[y] + 1:pos_b[x]]
                if middle_a and middle_a == middle_b:
                    return True
    return False


def order_swapped(a: str, b: str) -> bool:
    """Two words swapped around a directional word ("USD to EUR" / "EUR to USD") or around the same
    words ("Is A bigger than B" / "Is B bigger than A")."""
    ta, tb = words(a), words(b)
    pa, pb = _directional_pairs(ta), _directional_pairs(tb)
    if any((right, marker, left) in pb for left, marker, right in pa):
        return True
    return _swapped_around_middle(_content(ta), _content(tb))


def entities(text: str) -> set[str]:
    """Languages, units, currencies, products (any case), and capitalised words not opening a sentence."""
    found = {w.lower() for w in words(text) if w.lower() in _ENTITY_WORDS}
    found.update(m.lower() for m in re.findall(r"\b[a-zA-Z]+/[a-zA-Z]+\b", text))  # km/h, m/s
    for match in re.finditer(r"(?<![.!?:]\s)(?<!^)\b([A-Z][a-zA-Z0-9]+|[A-Z]{2,})\b", text.strip()):
        token = match.group(1).lower()
        if token not in _STOPWORDS and token not in _NUMBER_WORDS:
            found.add(token)
    return found


def entity_swapped(a: str, b: str) -> bool:
    """Each text names something the other does not: one entity replaced by another. (Adding or
    dropping a name alone is left to the similarity score.)"""
    ea, eb = entities(a), entities(b)
    return bool(ea - eb) and bool(eb - ea)


def disagreement(a: str, b: str) -> GuardName | None:
    """The first guard that tells ``a`` and ``b`` apart, or None when all agree."""
    if numbers(a) != numbers(b):
        return "number"
    if negation_count(a) != negation_count(b):
        return "negation"
    if order_swapped(a, b):
        return "order"
    if entity_swapped(a, b):
        return "entity"
    return None


def agree(a: str, b: str) -> bool:
    return disagreement(a, b) is None
