"""The lexical guards: examples from each kind of near miss, and properties over generated texts."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.cache.guards import agree, disagreement, entities, negation_count, numbers, words


@pytest.mark.parametrize(("a", "b", "guard"), [
    ("What is 15% of 200?", "What is 15% of 300?", "number"),
    ("Give me three ideas", "Give me five ideas", "number"),
    ("Set a budget of $2,000", "Set a budget of $20,000", "number"),
    ("Round to 2.5 places", "Round to 2.50001 places", "number"),
    ("Which foods contain gluten?", "Which foods do not contain gluten?", "negation"),
    ("Why does my code compile?", "Why doesn't my code compile?", "negation"),
    ("Coffee with sugar", "Coffee without sugar", "negation"),
    ("Convert USD to EUR", "Convert EUR to USD", "order"),
    ("Is A bigger than B?", "Is B bigger than A?", "order"),
    ("Is Paris bigger than London?", "Is London bigger than Paris?", "order"),
    ("How do I convert US dollars to euros today?", "How do I convert euros to US dollars today?", "order"),
    ("Why did Germany declare war on France?", "Why did France declare war on Germany?", "order"),
    ("map A -> B", "map B -> A", "order"),
    ("How do I reverse a list in Python?", "How do I reverse a list in JavaScript?", "entity"),
    ("Hello world in C", "Hello world in C++", "entity"),
    ("What is 30 mph in km/h?", "What is 30 mph in m/s?", "entity"),
    ("How many grams are in a pound?", "How many grams are in an ounce?", "entity"),
])
def test_near_misses_disagree(a: str, b: str, guard: str) -> None:
    assert disagreement(a, b) == guard
    assert disagreement(b, a) == guard


@pytest.mark.parametrize(("a", "b"), [
    ("What is 1,000 + 2.50?", "what is 1000 + 2.5"),
    ("Give me twenty ideas", "Give me 20 ideas"),
    ("I do not like tea", "I don't like tea"),
    ("Why won't my phone charge?", "Why is my phone not charging?"),
    ("No, it is not supported.", "It is not supported."),
    ("How do I undo the last git commit?", "How can I undo my last commit in git?"),
    ("Who is the CEO of Microsoft?", "Who is Microsoft's CEO?"),
    ("Give me a recipe for chocolate cake", "Can you give me a chocolate cake recipe?"),
    ("Is Python faster than Java for web servers?", "For web servers, is Python faster than Java?"),
    ("Convert USD to EUR", "How do I convert USD to EUR?"),
])
def test_faithful_paraphrases_agree(a: str, b: str) -> None:
    assert agree(a, b)
    assert agree(b, a)


def test_the_pieces() -> None:
    assert words("Don't use C++ or C# in node.js, A and I") == [
        "do", "not", "use", "c++", "or", "c#", "in", "node.js", "A", "and", "i"]
    assert sorted(map(str, numbers("pages 3-5, -2 degrees, 1,500 people, 2.50 dollars, twelve eggs"))) == [
        "-2", "1.5E+3", "12", "2.5", "3", "5"]
    assert negation_count("No, I never said that isn't true") == 2
    assert entities("How do I do this in Rust or PYTHON on Linux") >= {"rust", "python", "linux"}


texts = st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=120)
sentence_words = st.lists(st.sampled_from(
    ["how", "do", "I", "sort", "a", "list", "in", "the", "file", "quickly", "with", "tests", "server", "please",
     "data", "what", "is", "best", "way", "for", "my", "project"]), min_size=2, max_size=12)
entity_names = st.sampled_from(["Paris", "London", "Berlin", "Tokyo", "Rome", "Madrid", "Oslo", "Lima"])


@given(texts)
def test_a_text_always_agrees_with_itself(text: str) -> None:
    assert disagreement(text, text) is None


@given(texts, texts)
def test_guards_are_symmetric(a: str, b: str) -> None:
    assert agree(a, b) == agree(b, a)


@given(sentence_words, st.integers(min_value=0, max_value=10**6), st.integers(min_value=1, max_value=999))
def test_changing_a_number_disagrees(body: list[str], n: int, delta: int) -> None:
    base = " ".join(body)
    assert disagreement(f"{base} {n}", f"{base} {n + delta}") == "number"
    assert disagreement(f"{n} {base}", f"{base}") == "number"


@given(sentence_words, st.sampled_from(["not", "never", "no", "without"]), st.integers(min_value=0, max_value=12))
def test_adding_a_negation_disagrees(body: list[str], negation: str, at: int) -> None:
    at = min(at, len(body))
    negated = [*body[:at], negation, *body[at:]]
    assert disagreement(" ".join(body), " ".join(negated)) == "negation"


@given(entity_names, entity_names, st.sampled_from(["to", "than", "into", "from", "vs"]),
       st.sampled_from(["Is {x} bigger {m} {y}?", "Convert {x} {m} {y}", "How far is it {m} {x} {y}",
                        "Move the files {x} {m} {y} now", "{x} {m} {y}"]))
def test_swapping_two_entities_around_a_directional_word_disagrees(x: str, y: str, marker: str,
                                                                   template: str) -> None:
    if x == y:
        return
    a = template.format(x=x, y=y, m=marker)
    b = template.format(x=y, y=x, m=marker)
    if "{m} {x} {y}" in template:  # the marker is not between them: nothing directional was swapped
        return
    assert disagreement(a, b) == "order"
