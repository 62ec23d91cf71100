"""The semantic cache's verification guard: each check, the config knobs and the dev set."""

from __future__ import annotations

import json
import time
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from llm_cache_router_integrations.cache.guard import (
    SCORE_WEIGHTS,
    GuardConfig,
    GuardVerdict,
    VerificationGuard,
    clear_caches,
    pair_features,
)

DATA = Path(__file__).resolve().parents[2] / "benchmarks" / "data"
DEVSET = DATA / "devset.jsonl"
STATEMENTS = DATA / "devset_statements.jsonl"
FOCUS = DATA / "devset_focus.jsonl"
HIGH = 0.95  # a similarity above every threshold: only the guard decides


@pytest.fixture(scope="module")
def guard() -> VerificationGuard:
    return VerificationGuard()


def verdict(guard: VerificationGuard, a: str, b: str, similarity: float = HIGH) -> GuardVerdict:
    # the guard must be symmetric enough that both orders give the same decision
    first, second = guard.verify(a, b, similarity), guard.verify(b, a, similarity)
    assert first.ok == second.ok, (a, b, first, second)
    return first


# ------------------------------------------------------------------------------------------------
# each check: must reject (with the right reason) / must accept

REJECT = [
    # numbers, number words, units, dates
    ("numbers", "How many calories are in 2 eggs?", "How many calories are in 3 eggs?"),
    ("numbers", "Who won the World Cup in 2014?", "Who won the World Cup in 2018?"),
    ("numbers", "What is 15% of 80?", "What is 20% of 80?"),
    ("numbers", "Set a timer for five minutes.", "Set a timer for fifteen minutes."),
    ("numbers", "What's the weather on Monday?", "What's the weather on Friday?"),
    ("numbers", "What happened in March 2020?", "What happened in March 2021?"),
    ("numbers", "What is the first amendment?", "What is the second amendment?"),
    ("numbers", "How do I install Python 3.12?", "How do I install Python 3.8?"),
    (
        "numbers",
        "Route traffic from port 80 to port 8080.",
        "Route traffic from port 8080 to port 80.",
    ),
    (
        "numbers",
        "What were the key events of World War I?",
        "What were the key events of World War II?",
    ),
    # negation
    ("negation", "Why is my phone charging?", "Why is my phone not charging?"),
    ("negation", "Why does my code work?", "Why doesn't my code work?"),
    (
        "negation",
        "Which countries can I visit with a visa?",
        "Which countries can I visit without a visa?",
    ),
    ("negation", "Should I pay my bill on time?", "Should I never pay my bill on time?"),
    # both sides negated, but not the same number of times
    (
        "negation",
        "The compiler emits a warning when a variable is never used.",
        "The compiler emits no warning when a variable is never used.",
    ),
    # polarity: antonyms and negating prefixes
    (
        "polarity",
        "What are the advantages of remote work?",
        "What are the disadvantages of remote work?",
    ),
    ("polarity", "What foods increase blood pressure?", "What foods decrease blood pressure?"),
    ("polarity", "Should I stretch before a run?", "Should I stretch after a run?"),
    ("polarity", "List the pros of nuclear energy.", "List the cons of nuclear energy."),
    ("polarity", "How do I install Docker on Ubuntu?", "How do I uninstall Docker on Ubuntu?"),
    ("polarity", "How do I encrypt a file with GPG?", "How do I decrypt a file with GPG?"),
    ("polarity", "Is it safe to eat raw eggs?", "Is it unsafe to eat raw eggs?"),
    # entities and key nouns
    ("entities", "What is the capital of Australia?", "What is the capital of Austria?"),
    ("entities", "How do I reverse a list in Python?", "How do I reverse a list in JavaScript?"),
    ("entities", "Who is the CEO of Microsoft?", "Who is the CEO of Apple?"),
    ("entities", "How do I deploy to AWS?", "How do I deploy to AWS Lambda?"),
    ("substitution", "How do I reset my password?", "How do I reset my username?"),
    (
        "substitution",
        "How do I train a cat to use a litter box?",
        "How do I train a dog to use a litter box?",
    ),
    # direction / order
    ("direction", "Convert Celsius to Fahrenheit.", "Convert Fahrenheit to Celsius."),
    (
        "direction",
        "How long is the flight from London to New York?",
        "How long is the flight from New York to London?",
    ),
    ("direction", "Is Python faster than Java?", "Is Java faster than Python?"),
    (
        "direction",
        "How do I convert a PDF to a Word document?",
        "How do I convert a Word document to a PDF?",
    ),
    ("direction", "Does the Earth orbit the Sun?", "Does the Sun orbit the Earth?"),
    (
        "direction",
        "The frontend service calls the auth service to validate each token.",
        "The auth service calls the frontend service to validate each token.",
    ),
    # different task / question type on the same topic
    (
        "task",
        "Summarize this article about climate change.",
        "Translate this article about climate change.",
    ),
    # "in which city" / "in which country" keep their noun; "known for" is not "known as"
    ("substitution", "In which country is the Eiffel Tower?", "In which city is the Eiffel Tower?"),
    ("substitution", "What is Paris known for?", "What is Paris nicknamed?"),
    # "what/which + noun" asks for a person, place or thing, not a date or an amount
    ("task", "When was the Treaty of Paris signed?", "Which countries signed the Treaty of Paris?"),
    ("task", "How many moons does Jupiter have?", "Which moon of Jupiter is the largest?"),
    ("task", "Explain recursion.", "Write a recursive function."),
    ("task", "When was the Eiffel Tower built?", "Why was the Eiffel Tower built?"),
    ("task", "How do I learn Python?", "Why should I learn Python?"),
    ("task", "What is Kubernetes?", "How do I install Kubernetes?"),
    ("task", "Who invented the telephone?", "When was the telephone invented?"),
]

ACCEPT = [
    ("Who won the World Cup in 2014?", "Which country won the World Cup in 2014?"),
    ("What is the main ingredient of hummus?", "What is the primary ingredient of hummus?"),
    ("Where was Marie Curie born?", "In which city was Marie Curie born?"),
    ("What does HTTP stand for?", "What is HTTP an abbreviation for?"),
    ("What is the fastest animal in the world?", "What is the fastest animal on Earth?"),
    ("Why is Chicago known as the Windy City?", "Why is Chicago nicknamed the Windy City?"),
    ("How many calories are in 2 eggs?", "How many calories are in two eggs?"),
    ("How much is $1,000 in euros?", "How much is $1000 in euros?"),
    ("Set a timer for twenty five minutes", "Set a timer for 25 minutes"),
    ("Why doesn't my code work?", "Why does my code not work?"),
    ("I don't know how to reset my password", "How do I reset my password?"),
    ("What is NLP?", "What is natural language processing?"),
    ("What is the difference between TCP and UDP?", "What is the difference between UDP and TCP?"),
    (
        "How long does it take to fly from New York to London?",
        "What is the flight time from New York to London?",
    ),
    ("In Python, how do I reverse a list?", "How do I reverse a list in Python?"),
    (
        "How do I check which version of Python is installed?",
        "How can I check the installed Python version?",
    ),
    ("What is photosynthesis?", "Explain photosynthesis."),
    ("Could you please tell me how to reset my router?", "How do I reset my router?"),
    ("How do I reverse a strng in Python?", "How do I reverse a string in Python?"),
    ("What movies are similar to Inception?", "What films are similar to Inception?"),
    ("What is the largest ocean on Earth?", "What is the biggest ocean on Earth?"),
    ("How do I purchase a gift card?", "How can I buy a gift card?"),
    ("What's the best way to learn Spanish quickly?", "What is the fastest way to learn Spanish?"),
    ("How do I install Node.js on macOS?", "install node.js macos"),
    ("whats the weather like in london in march", "What is the weather like in London in March?"),
    ("The adult body has 206 bones.", "An adult body has two hundred and six bones."),
    ("The upload limit is 2 GB per file.", "Each file may be at most two gigabytes."),
    # reworded statements move many words: not a role swap
    (
        "Kubernetes restarts a container automatically when its liveness probe fails.",
        "If a container's liveness probe fails, the container is automatically restarted by "
        "Kubernetes.",
    ),
    (
        "The backup job copies the database, the uploaded media and the config files every night.",
        "Every night the backup job copies the config files, the uploaded media and the database.",
    ),
]


@pytest.mark.parametrize(("reason", "a", "b"), REJECT)
def test_rejects_hard_negative(guard: VerificationGuard, reason: str, a: str, b: str) -> None:
    v = verdict(guard, a, b)
    assert not v.ok
    assert v.reason == reason, v
    assert v.detail


@pytest.mark.parametrize(("a", "b"), ACCEPT)
def test_accepts_paraphrase(guard: VerificationGuard, a: str, b: str) -> None:
    v = verdict(guard, a, b)
    assert v.ok, v
    assert v.reason is None
    assert 0.0 <= v.score <= 1.0


def test_identical_text_is_accepted(guard: VerificationGuard) -> None:
    v = guard.verify("How do I reset my password?", "how do i reset my password?  ", 0.99)
    assert v.ok and v.score == 1.0


def test_long_texts_are_checked_leniently(guard: VerificationGuard) -> None:
    a = (
        "The with_details parameter is not mandatory and is set to False by default, and it can "
        "be used to get the full information about the datasets rather than only the short names "
        "of the datasets."
    )
    b = (
        "The with_details parameter is optional and defaults to False; it is used to return the "
        "full details on the datasets instead of only the short names of the datasets."
    )
    assert guard.verify(a, b, HIGH).reason != "negation"
    strict = VerificationGuard(GuardConfig(strict_max_words=200, negation_max_unmatched=1.0))
    assert strict.verify(a, b, HIGH).reason == "negation"


def test_a_reworded_negation_is_left_to_the_score(guard: VerificationGuard) -> None:
    # Most words differ besides the negation: an equivalent rewording, not a flipped meaning.
    a = "The region parameter is optional; the client uses the default region."
    b = "You don't have to set the region: the client falls back to its default one."
    assert guard.verify(a, b, HIGH).reason != "negation"
    strict = VerificationGuard(GuardConfig(negation_max_unmatched=1.0))
    assert strict.verify(a, b, HIGH).reason == "negation"
    # The same words with one negation more are still rejected by the rule.
    flipped = "The region parameter is not optional; the client uses the default region."
    assert guard.verify(a, flipped, HIGH).reason == "negation"


# ------------------------------------------------------------------------------------------------
# configuration


def test_min_similarity_floor() -> None:
    g = VerificationGuard(GuardConfig(min_similarity=0.9))
    v = g.verify("How do I reset my router?", "How can I reset my router?", 0.85)
    assert not v.ok and v.reason == "similarity"
    assert g.verify("How do I reset my router?", "How can I reset my router?", 0.95).ok


def test_disabled_guard_accepts_everything() -> None:
    g = VerificationGuard(GuardConfig(enabled=False))
    assert g.verify("Convert Celsius to Fahrenheit.", "Convert Fahrenheit to Celsius.", 0.1).ok


@pytest.mark.parametrize(
    ("flag", "a", "b"),
    [
        ("check_numbers", "How many calories are in 2 eggs?", "How many calories are in 3 eggs?"),
        ("check_negation", "Why is my phone charging?", "Why is my phone not charging?"),
        (
            "check_polarity",
            "What foods increase blood pressure?",
            "What foods decrease blood pressure?",
        ),
        ("check_entities", "What is the capital of Australia?", "What is the capital of Austria?"),
        ("check_direction", "Convert Celsius to Fahrenheit.", "Convert Fahrenheit to Celsius."),
        ("check_task", "When was the Eiffel Tower built?", "Why was the Eiffel Tower built?"),
        ("check_substitution", "How do I reset my password?", "How do I reset my username?"),
    ],
)
def test_each_check_can_be_switched_off(flag: str, a: str, b: str) -> None:
    flags = [
        "check_numbers",
        "check_negation",
        "check_polarity",
        "check_entities",
        "check_direction",
        "check_task",
        "check_substitution",
    ]
    only = VerificationGuard(GuardConfig(use_score=False, **{f: f == flag for f in flags}))
    v = only.verify(a, b, HIGH)
    assert not v.ok
    assert flag == f"check_{v.reason}"
    none = VerificationGuard(GuardConfig(use_score=False, **{f: False for f in flags}))
    assert none.verify(a, b, HIGH).ok
    without = VerificationGuard(GuardConfig(use_score=False, **{flag: False}))
    assert without.verify(a, b, HIGH).reason != v.reason


def test_entity_extra_policy() -> None:
    a, b = "How do I deploy to AWS?", "How do I deploy to AWS Lambda?"
    assert VerificationGuard().verify(a, b, HIGH).reason == "entities"
    lenient = VerificationGuard(GuardConfig(entity_extra="score"))
    assert lenient.verify(a, b, HIGH).reason != "entities"
    with pytest.raises(ValidationError):
        GuardConfig(entity_extra="maybe")


def test_score_threshold_and_accept_similarity() -> None:
    a, b = "How do I fix a slow laptop?", "What makes a laptop slow and how to repair it?"
    strict = VerificationGuard(GuardConfig(min_score=0.99))
    v = strict.verify(a, b, 0.86)
    assert not v.ok and v.reason == "score" and 0.0 < v.score < 0.99
    skip = VerificationGuard(GuardConfig(min_score=0.99, accept_similarity=0.85))
    assert skip.verify(a, b, 0.86).ok
    no_score = VerificationGuard(GuardConfig(min_score=0.99, use_score=False))
    assert no_score.verify(a, b, 0.86).ok


def test_score_grows_with_similarity(guard: VerificationGuard) -> None:
    a, b = "How can I improve my sleep quality?", "How do I get better sleep?"
    low, high = guard.verify(a, b, 0.80).score, guard.verify(a, b, 0.97).score
    assert low < high


def test_custom_synonyms_and_antonyms() -> None:
    a, b = (
        "How do I train a cat to use a litter box?",
        "How do I train a kitty to use a litter box?",
    )
    assert VerificationGuard().verify(a, b, HIGH).reason == "substitution"
    assert VerificationGuard(GuardConfig(synonyms={"kitty": "cat"})).verify(a, b, HIGH).ok
    c, d = "Is the market bullish today?", "Is the market bearish today?"
    custom = VerificationGuard(GuardConfig(antonyms=[("bullish", "bearish")], use_score=False))
    assert custom.verify(c, d, HIGH).reason == "polarity"


def test_config_is_frozen_and_strict() -> None:
    config = GuardConfig()
    with pytest.raises(ValidationError):
        config.min_score = 0.1  # type: ignore[misc]
    with pytest.raises(ValidationError):
        GuardConfig(unknown=True)  # type: ignore[call-arg]
    with pytest.raises(ValidationError):
        GuardConfig(min_score=1.5)


def test_features_match_the_score_weights() -> None:
    features = pair_features("How do I reset my router?", "How can I reset my modem?", 0.9)
    assert set(features) == set(SCORE_WEIGHTS) - {"bias"}
    assert features["similarity"] == 0.9
    assert all(isinstance(v, float) for v in features.values())


def test_guard_is_fast(guard: VerificationGuard) -> None:
    rows = _devset()
    pairs = [(r["a"], r["b"]) for r in rows]
    clear_caches()
    start = time.perf_counter()
    for a, b in pairs:
        guard.verify(a, b, HIGH)
    cold = (time.perf_counter() - start) / len(pairs)
    start = time.perf_counter()
    for a, b in pairs:
        guard.verify(a, b, HIGH)
    warm = (time.perf_counter() - start) / len(pairs)
    # measured about 100 µs cold and 15 µs warm per pair; generous bounds for slow CI machines
    assert cold < 2e-3
    assert warm < 5e-4


# ------------------------------------------------------------------------------------------------
# the dev set: the guard's lexical decisions with the similarity fixed high

MIN_ACCEPT_PARAPHRASE = 0.93
MIN_REJECT = {
    "number": 0.97,
    "negation": 0.97,
    "direction": 0.95,
    "entity": 0.9,
    "task": 0.85,
    "unrelated-similar": 0.6,
}


def _devset() -> list[dict[str, object]]:
    return [json.loads(line) for line in DEVSET.read_text(encoding="utf-8").splitlines() if line]


def test_devset_shape() -> None:
    rows = _devset()
    assert len(rows) >= 300
    counts = Counter(str(r["category"]) for r in rows)
    assert counts["paraphrase"] >= 120
    for category in MIN_REJECT:
        assert counts[category] >= 40, category
    for r in rows:
        assert set(r) == {"a", "b", "label", "category"}
        assert r["label"] == (1 if r["category"] == "paraphrase" else 0)
        assert r["a"] != r["b"]


def test_devset_decisions(guard: VerificationGuard) -> None:
    accepted: dict[str, list[bool]] = defaultdict(list)
    for r in _devset():
        accepted[str(r["category"])].append(guard.verify(str(r["a"]), str(r["b"]), HIGH).ok)
    rate = {cat: sum(oks) / len(oks) for cat, oks in accepted.items()}
    assert rate["paraphrase"] >= MIN_ACCEPT_PARAPHRASE, rate
    for category, minimum in MIN_REJECT.items():
        assert 1 - rate[category] >= minimum, (category, rate)


def test_statement_devset_decisions(guard: VerificationGuard) -> None:
    """The declarative-statement slice: longer, reworded texts (see docs/cache-guard.md)."""
    rows = [json.loads(line) for line in STATEMENTS.read_text(encoding="utf-8").splitlines()]
    assert len(rows) >= 150 and all(r["form"] == "statement" for r in rows)
    tp = fp = positives = 0
    for r in rows:
        ok = guard.verify(r["a"], r["b"], HIGH).ok
        positives += r["label"]
        tp += ok and r["label"] == 1
        fp += ok and r["label"] == 0
    print(f"statements at similarity {HIGH}: accepted {tp}/{positives} paraphrases, {fp} negatives")
    # regression floors under the measured 67/80 and 10/81 (with the real cosine, the threshold
    # also turns some away: see benchmarks/bench_quality.py)
    assert tp / positives >= 0.75 and fp / (len(rows) - positives) <= 0.15


def test_same_topic_devset_with_real_cosines(sentence_encoder: Any) -> None:
    """The same-topic slice (other facet of one subject vs reworded question) through the real
    MiniLM cosine threshold and the guard, as the cache decides it."""
    rows = [json.loads(line) for line in FOCUS.read_text(encoding="utf-8").splitlines()]
    assert len(rows) == 240 and sum(r["label"] for r in rows) == 120
    a = sentence_encoder.embed_sync([r["a"] for r in rows])
    b = sentence_encoder.embed_sync([r["b"] for r in rows])
    guard = VerificationGuard()
    tp = fp = 0
    for r, similarity in zip(rows, (a * b).sum(axis=1).tolist(), strict=True):
        hit = similarity >= 0.80 and guard.verify(r["a"], r["b"], similarity).ok
        tp += hit and r["label"] == 1
        fp += hit and r["label"] == 0
    print(f"same-topic slice: {tp}/120 paraphrases served, {fp}/120 other questions served")
    # measured 103/120 and 3/120 (benchmarks/bench_quality.py); floors leave room for float noise
    assert tp >= 98 and fp <= 5


# ------------------------------------------------------------------------------------------------
# robustness: adversarial inputs finish fast, huge numbers never crash, near-miss names and numbers


def _timed_verify(guard: VerificationGuard, a: str, b: str) -> tuple[float, GuardVerdict]:
    clear_caches()
    start = time.perf_counter()
    v = guard.verify(a, b, 0.97)
    return time.perf_counter() - start, v


def _random_words(seed: int, n: int, initial: str = "a") -> list[str]:
    import random

    rnd = random.Random(seed)
    letters = "abcdefghijklmnopqrstuvwxyz"
    return [initial + "".join(rnd.choices(letters, k=rnd.randint(5, 10))) for _ in range(n)]


ADVERSARIAL = {
    # the sentence-end test was quadratic on runs of line breaks
    "newlines": ("hello" + "\n" * 9_900 + "-world", "hello" + "\n" * 9_899 + "-world x"),
    # the definition pattern backtracked over runs of dots
    "definition_dots": ("what is a" + "." * 9_900 + " b c", "what is a" + "." * 9_900 + " b d"),
    "definition_dashes": ("what is a" + ".-" * 4_900 + " b c", "what is a" + ".-" * 4_900 + " b"),
    # typo matching and acronym spans compared every word with every word
    "distinct_words": (
        " ".join(_random_words(0, 490)),
        " ".join(_random_words(1, 490)),
    ),
    "acronyms": (
        "Explain " + " ".join(f"A{chr(66 + i % 20)}{chr(66 + i // 20 % 20)}" for i in range(490)),
        "explain a " + "and " * 480 + "b",
    ),
    "shuffled_words": (
        " ".join(_random_words(2, 490)),
        " ".join(reversed(_random_words(2, 490))),
    ),
}


@pytest.mark.parametrize("case", sorted(ADVERSARIAL))
def test_adversarial_inputs_are_fast(guard: VerificationGuard, case: str) -> None:
    a, b = ADVERSARIAL[case]
    elapsed, v = _timed_verify(guard, a, b)
    assert isinstance(v, GuardVerdict)
    # about 20 ms on an idle core; before the fix these took seconds
    assert elapsed < 0.5, (case, elapsed)


@pytest.mark.parametrize(
    "text",
    [
        "hello" + "\n" * 100_000 + "-world",
        "what is a" + "." * 100_000 + " b c",
        " ".join(_random_words(3, 20_000)),
        "a," * 50_000,
    ],
)
def test_texts_over_the_caps_are_rejected_fast(guard: VerificationGuard, text: str) -> None:
    elapsed, v = _timed_verify(guard, text, text + " x")
    assert not v.ok and v.reason == "too_long", v
    assert elapsed < 0.5, elapsed
    assert guard.verify(text, text, 0.99).ok  # the same text is still the same text


def test_word_cap_is_a_config_knob() -> None:
    a, b = "How do I reset my router?", "How can I reset my router?"
    assert VerificationGuard().verify(a, b, HIGH).ok
    v = VerificationGuard(GuardConfig(max_words=5)).verify(a, b, HIGH)
    assert v.reason == "too_long" and "max_words=5" in v.detail
    v = VerificationGuard(GuardConfig(max_chars=20)).verify(a, b, HIGH)
    assert v.reason == "too_long" and "max_chars=20" in v.detail
    with pytest.raises(ValidationError):
        GuardConfig(max_words=0)


def test_devsets_are_far_below_the_caps() -> None:
    config = GuardConfig()
    for path in (DEVSET, STATEMENTS, FOCUS):
        for line in path.read_text(encoding="utf-8").splitlines():
            row = json.loads(line)
            for text in (row["a"], row["b"]):
                assert len(text.split()) < config.max_words / 10
                assert len(text) < config.max_chars / 10


@pytest.mark.parametrize(
    ("a", "b"),
    [
        ("factor " + "9" * 309, "factor " + "9" * 310),
        ("is " + "9" * 301 + "bn big", "is " + "9" * 301 + "m big"),
        ("half " + "billion " * 40 + "stars", "half " + "billion " * 41 + "stars"),
        ("1" * 5_000 + " items", "1" * 4_999 + "2 items"),
    ],
)
def test_huge_numbers_are_compared_exactly(guard: VerificationGuard, a: str, b: str) -> None:
    v = verdict(guard, a, b)
    assert not v.ok and v.reason == "numbers", v
    assert guard.verify(a, a + " please", HIGH).reason != "numbers"


def test_number_words_and_multipliers_stay_canonical(guard: VerificationGuard) -> None:
    assert guard.verify("Is 12345678901234567890 prime?", "Is 12345678901234567891 prime?", HIGH)
    assert not guard.verify(
        "Is 12345678901234567890 prime?", "Is 12345678901234567891 prime?", HIGH
    ).ok
    assert guard.verify("How big is 10k?", "How big is 10000?", HIGH).ok
    assert guard.verify("two hundred and six bones", "206 bones", HIGH).ok


@pytest.mark.parametrize(
    ("a", "b"),
    [
        ("What is the population of India?", "What is the population of Indiana?"),
        ("What is the capital of Niger?", "What is the capital of Nigeria?"),
        ("What is the capital of Iran?", "What is the capital of Iraq?"),
        ("What is the weather in Iceland?", "What is the weather in Ireland?"),
        ("Where is Colombia?", "Where is Columbia?"),
    ],
)
def test_near_identical_place_names_are_different_entities(
    guard: VerificationGuard, a: str, b: str
) -> None:
    v = verdict(guard, a, b)
    assert not v.ok and v.reason == "entities", v


@pytest.mark.parametrize(
    ("a", "b"),
    [
        ("What do Chinese people think about India?", "What do Chinese people think of Indians?"),
        ("What is the largest desert in Asia?", "Which Asian desert is the largest?"),
        ("How do I start a youtube channel?", "How do I start a YouTube channel?"),
        ("How do I install Kubernetes on Ubunut?", "How do I install Kubernetes on Ubuntu?"),
    ],
)
def test_demonyms_spelling_variants_and_typos_still_match(
    guard: VerificationGuard, a: str, b: str
) -> None:
    assert verdict(guard, a, b).reason != "entities"


@pytest.mark.parametrize(
    ("a", "b"),
    [
        ("Python 3.10 release date", "Python 3.1 release date"),
        ("What changed in version 2.10?", "What changed in version 2.1?"),
        ("What is -5 squared?", "What is 5 squared?"),
        ("Convert -40 degrees Celsius to Fahrenheit", "Convert 40 degrees Celsius to Fahrenheit"),
        ("Convert \u221240 degrees Celsius", "Convert 40 degrees Celsius"),
        ("What is ½ cup in grams?", "What is ¼ cup in grams?"),
        ("What is ① plus ②?", "What is ③ plus ②?"),
    ],
)
def test_versions_signs_and_number_forms_differ(guard: VerificationGuard, a: str, b: str) -> None:
    v = verdict(guard, a, b)
    assert not v.ok and v.reason == "numbers", v


@pytest.mark.parametrize(
    ("a", "b"),
    [
        ("What is 3.50 plus 1?", "What is 3.5 plus 1?"),
        ("It costs $2.50 per month", "It costs $2.5 per month"),
        ("What is ½ cup in grams?", "What is 0.5 cup in grams?"),
        ("Explain pages 3-5 of the report", "Explain pages 3-5 of this report"),
        ("How do I map port 80->8080?", "How do I map port 80 -> 8080?"),
    ],
)
def test_plain_quantities_and_ranges_still_match(guard: VerificationGuard, a: str, b: str) -> None:
    assert verdict(guard, a, b).reason != "numbers"


def test_long_runs_of_line_breaks_are_linear_without_the_caps() -> None:
    # 100k line breaks between two words: the old sentence-end regex took > 20 s here
    g = VerificationGuard(GuardConfig(max_chars=300_000))
    a = "hello" + "\n" * 100_000 + "-world"
    elapsed, v = _timed_verify(g, a, a + " x")
    assert isinstance(v, GuardVerdict)
    assert elapsed < 0.5, elapsed


@pytest.mark.parametrize(
    ("a", "b"),
    [
        ("Is 2.50 a good price for milk?", "Is 2.5 a good price for milk?"),
        ("Is 3.0 a good GPA?", "Is 3 a good GPA?"),
        ("Multiply 2.50 by 4", "Multiply 2.5 by 4"),
        ("What is new in version 2.0?", "What is new in version 2?"),
        ("Toys for ages 5 -10", "Toys for ages 5-10"),
        ("Is it -5 degrees today?", "Is it minus 5 degrees today?"),
        ("What is 10 minus 5?", "What is 10-5?"),
        (
            "Compiling needs version 3.20 or later of CMake.",
            "Building needs CMake 3.20 or newer.",
        ),
    ],
)
def test_number_rules_keep_equal_numbers_equal(a: str, b: str) -> None:
    """The sign and version rules do not split equal numbers: a sentence's first word is no
    version cue, a "-" after a number is a range, "minus 5" (not "10 minus 5") is -5, and a
    version's insignificant ".0" is dropped."""
    verdict = VerificationGuard().verify(a, b, 0.95)
    assert verdict.reason != "numbers", verdict
