"""The verification guard: decides whether a semantic near-match may serve a cached answer.

Cosine similarity between sentence embeddings cannot tell a paraphrase from a *hard negative*:
"convert Celsius to Fahrenheit" / "convert Fahrenheit to Celsius", "calories in 2 eggs" /
"calories in 3 eggs", "capital of Australia" / "capital of Austria" all score 0.85-0.99, like true
paraphrases. Serving a wrong cached answer is far worse than a miss, so every semantic candidate
goes through :class:`VerificationGuard` before it is served.

The guard is pure Python (regular expressions and small word lists, no model). It runs a fixed
sequence of *checks*; the first that fails rejects the pair and names itself in
:attr:`GuardVerdict.reason`:

``similarity``
    the cosine similarity is below :attr:`GuardConfig.min_similarity`.
``too_long``
    a text has more tokens than :attr:`GuardConfig.max_words` or more characters than
    :attr:`GuardConfig.max_chars` (a miss; it bounds the guard's work on the event loop).
``numbers``
    the numbers, number words, ordinals, years, months, weekdays or relative days differ
    ("2 eggs" / "3 eggs", "in 2014" / "in 2018", "Monday" / "Friday").
``negation``
    the sides carry a different number of negations (not/no/never/n't/without/none...).
``polarity``
    the sides use opposite words (increase/decrease, best/worst, before/after, pros/cons,
    install/uninstall, encrypt/decrypt...), from a built-in antonym list or a negating prefix.
``entities``
    a named entity (capitalised word, acronym, product or technology name, identifier) of one
    side has no counterpart in the other.
``direction``
    the same things in the opposite order around a direction marker ("from A to B" /
    "from B to A", "convert X to Y" / "convert Y to X", "A faster than B" / "B faster than A").
``task``
    different tasks on the same topic (summarize / translate / explain / write...) or
    incompatible question words (how / why / when / where / who / how many / what-is; "which
    countries signed..." asks for a thing, not a date or an amount).
``substitution``
    exactly one content word replaced by an unrelated one in the same slot, everything else
    equal ("reset my password" / "reset my username", "train a cat" / "train a dog").
``score``
    a small logistic model over the similarity and lexical-overlap features (see
    :func:`pair_features` and :data:`SCORE_WEIGHTS`, fitted offline by
    ``benchmarks/tune_guard.py`` on the MeanCache QQP validation split and the project's dev
    set) is below :attr:`GuardConfig.min_score`.

Texts longer than :attr:`GuardConfig.strict_max_words` words are checked more leniently: the
negation check is skipped and numbers only reject when both sides carry different ones (long
statements are paraphrased with "not mandatory" / "optional" and similar).

Every check can be switched off in :class:`GuardConfig`. Deciding a pair whose two texts were
seen before takes about 25-35 µs; analysing a new text costs about 55 µs more, once (the
per-text analysis is memoised, so a cached candidate is analysed once and a query once per
lookup). See ``docs/cache-guard.md`` for examples and measured figures.
"""

from __future__ import annotations

import math
import re
import unicodedata
from bisect import bisect_right
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from decimal import MAX_EMAX, MAX_PREC, MIN_EMIN, Context, Decimal
from functools import lru_cache
from itertools import islice

from pydantic import BaseModel, ConfigDict, Field

__all__ = [
    "SCORE_WEIGHTS",
    "GuardConfig",
    "GuardVerdict",
    "VerificationGuard",
    "clear_caches",
    "pair_features",
]


def _split(text: str) -> list[str]:
    return text.split()


def _words(text: str) -> frozenset[str]:
    return frozenset(text.split())


class GuardConfig(BaseModel):
    """Knobs of the :class:`VerificationGuard`.

    * ``enabled``: ``False`` accepts every pair (plain cosine caching).
    * ``min_similarity``: a cosine floor below which nothing is served, whatever the checks say
      (the cache applies its own ``CacheConfig.threshold`` first; 0.80 is the recommended
      threshold with the guard on).
    * ``check_numbers`` / ``check_negation`` / ``check_polarity`` / ``check_entities`` /
      ``check_direction`` / ``check_task`` / ``check_substitution``: switch one rule each.
    * ``entity_extra``: what to do when only one side names an extra entity ("deploy to AWS" /
      "deploy to AWS Lambda"): ``"reject"`` (default, safe) or ``"score"`` (left to the score).
    * ``strict_max_words``: texts longer than this are checked leniently (no negation check;
      numbers only reject when both sides carry different ones).
    * ``max_words`` / ``max_chars``: a text with more words (tokens: words and numbers) or
      characters than this is rejected with reason ``"too_long"`` (a miss, never a wrong
      answer) before it is analysed; identical texts are still accepted. MiniLM reads only the
      first 256 word pieces (about 200 words), so two long texts that share their opening look
      identical to the embedding; the caps also bound the guard's synchronous work on the event
      loop (about 20 ms at the caps).
    * ``negation_max_unmatched``: the negation check applies when at most this share of the
      content words has no counterpart; a sentence reworded around an equivalent negation ("is
      optional" / "you don't have to set it") is left to the score.
    * ``use_score`` / ``min_score``: the final logistic score in [0, 1] and its acceptance
      threshold (0.7; raise it for fewer false hits, lower it for more hits).
    * ``accept_similarity``: at or above this cosine the score is skipped (the rules still
      run); the default 1.01 never skips it.
    * ``synonyms``: extra words that count as equal, ``{"automobile": "car"}`` (both map to one
      canonical word); ``antonyms``: extra opposite pairs, ``[("bullish", "bearish")]``.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    enabled: bool = True
    min_similarity: float = Field(default=0.80, ge=-1.0, le=1.0)
    accept_similarity: float = Field(default=1.01, ge=-1.0, le=1.01)
    strict_max_words: int = Field(default=18, ge=1)
    max_words: int = Field(default=500, ge=1)
    max_chars: int = Field(default=10_000, ge=1)
    check_numbers: bool = True
    check_negation: bool = True
    negation_max_unmatched: float = Field(default=0.3, ge=0.0, le=1.0)
    check_polarity: bool = True
    check_entities: bool = True
    entity_extra: str = Field(default="reject", pattern="^(reject|score)$")
    check_substitution: bool = True
    check_direction: bool = True
    check_task: bool = True
    use_score: bool = True
    min_score: float = Field(default=0.7, ge=0.0, le=1.0)
    synonyms: dict[str, str] = Field(default_factory=dict)
    antonyms: list[tuple[str, str]] = Field(default_factory=list)


@dataclass(frozen=True, slots=True)
class GuardVerdict:
    """The guard's decision on one (query, candidate) pair.

    ``ok`` is true when the cached answer may be served; ``reason`` names the check that rejected
    (``None`` when accepted); ``score`` is the logistic score in [0, 1] (0.0 when a rule rejected
    before it was computed); ``detail`` is a short human-readable explanation.
    """

    ok: bool
    reason: str | None
    score: float
    detail: str = ""


# --------------------------------------------------------------------------------------------
# word lists

_STOPWORDS = _words("""
    a an the this that these those there here it its it's is are was were be been being am
    do does did doing done have has had having i me my mine myself we us our ours you your yours
    he him his she her hers they them their theirs one ones someone something anything
    of in on at by for with about as into onto over under up down out off to from than then
    and or but if so because while also too very really just only even still yet already
    can could would should will shall may might must need needs ought
    please kindly thanks thank hi hello hey dear sir madam excuse sorry okay ok
    quick question wondering wonder know tell let like love want wanted wanting would've
    help helping understand give giving gimme some any all each every other another such
    get got getting go going goes gone way ways thing things stuff lot lots much many
    which what whats who whom whose when where why how whether
    i'd i'm i've i'll you're you've we're they're let's
    s t d ll ve re m u ur pls plz thx
    via per using use used uses within among
    possible able best good better great
    """)
"""Function words and paraphrase filler ignored by the content-word comparison."""

_NEGATIONS = _words("not no never without none nothing nobody nowhere neither nor cannot noone non")

_IS_AFTER = _words("what where who how when why that it there here he she")
_ARE_AFTER = _words("what where who how when why they we you there")


def _expand_nt(match: str) -> str:
    return match[:-3] + " not"


def _expand_nt_no_apostrophe(match: str) -> str:
    return match[:-2] + " not"


def _expand_clitic(match: str) -> str:
    word, _, clitic = match.partition("'")
    lower, clitic = word.lower(), clitic.lower()
    if clitic == "s" and lower in _IS_AFTER:
        return word + " is"
    if clitic == "re" and lower in _ARE_AFTER:
        return word + " are"
    return word


_CONTRACTION_RULES: tuple[tuple[str, str | Callable[[str], str]], ...] = (
    (r"\bcan'?t\b", "can not"),
    (r"\bwon't\b", "will not"),
    (r"\bshan't\b", "shall not"),
    (r"\b\w+n't\b", _expand_nt),
    (
        r"\b(?:do|does|did|is|are|was|were|has|have|had|could|should|would)nt\b",
        _expand_nt_no_apostrophe,
    ),
    (r"\b\w+'(?:s|re|ve|ll|d|m)\b", _expand_clitic),
)

_NUMBER_WORDS = {
    "two": 2,
    "three": 3,
    "four": 4,
    "five": 5,
    "six": 6,
    "seven": 7,
    "eight": 8,
    "nine": 9,
    "ten": 10,
    "eleven": 11,
    "twelve": 12,
    "thirteen": 13,
    "fourteen": 14,
    "fifteen": 15,
    "sixteen": 16,
    "seventeen": 17,
    "eighteen": 18,
    "nineteen": 19,
    "twenty": 20,
    "thirty": 30,
    "forty": 40,
    "fifty": 50,
    "sixty": 60,
    "seventy": 70,
    "eighty": 80,
    "ninety": 90,
    "dozen": 12,
    "half": 0.5,
    "quarter": 0.25,
    "twice": 2,
    "thrice": 3,
}
_SCALE_WORDS = {"hundred": 100, "thousand": 1_000, "million": 1_000_000, "billion": 1_000_000_000}
_ORDINAL_WORDS = {
    "first": 1,
    "second": 2,
    "third": 3,
    "fourth": 4,
    "fifth": 5,
    "sixth": 6,
    "seventh": 7,
    "eighth": 8,
    "ninth": 9,
    "tenth": 10,
    "last": -1,
}
"""Ordinals are *weak* numbers: they only count when both sides carry one ("first" is also
"at first", "first time"), except that a weak value can match a strong one."""

_WEAK_NUMBER_WORDS = {"zero": 0, "one": 1, "once": 1, **_ORDINAL_WORDS}
_ROMAN = {"ii": 2, "iii": 3, "iv": 4, "vi": 6, "vii": 7, "viii": 8, "ix": 9, "xi": 11, "xii": 12}
_MONTHS = {
    m: i + 1
    for i, m in enumerate(
        _split(
            "january february march april may june july august september october november december"
        )
    )
}
_MONTH_ABBR = {m[:3]: v for m, v in _MONTHS.items() if m != "may"} | {"sept": 9}
_WEEKDAYS = {
    d: i for i, d in enumerate(_split("monday tuesday wednesday thursday friday saturday sunday"))
}
_RELATIVE_DAYS = _words("today tomorrow yesterday tonight weekend")

_ANTONYM_PAIRS: tuple[tuple[str, str], ...] = tuple(
    (pair.split("/")[0], pair.split("/")[1])
    for pair in _split(
        """
    increase/decrease increase/reduce raise/lower rise/fall rise/drop gain/lose gain/loss
    best/worst good/bad better/worse before/after pro/con advantage/disadvantage
    benefit/drawback benefit/risk benefit/harm strength/weakness high/low higher/lower
    highest/lowest max/min maximum/minimum maximize/minimize more/less more/fewer most/least
    fast/slow faster/slower fastest/slowest cheap/expensive cheapest/expensive buy/sell
    import/export upload/download push/pull start/stop start/end begin/end open/close
    enable/disable add/remove add/delete install/uninstall install/remove encrypt/decrypt
    encode/decode compress/decompress serialize/deserialize lock/unlock follow/unfollow
    subscribe/unsubscribe mount/unmount zip/unzip show/hide accept/reject allow/deny allow/block
    include/exclude send/receive lend/borrow win/lose pass/fail success/failure true/false
    positive/negative input/output inner/outer left/right north/south east/west above/below
    inside/outside internal/external public/private client/server frontend/backend read/write
    forward/backward ascending/descending uppercase/lowercase upper/lower
    synchronous/asynchronous sync/async online/offline legal/illegal happy/sad strong/weak
    easy/hard easy/difficult safe/dangerous safe/unsafe healthy/unhealthy rich/poor hot/cold
    warm/cold early/late earliest/latest old/new older/newer oldest/newest young/old long/short
    longest/shortest large/small big/small largest/smallest biggest/smallest heavy/light
    dark/light day/night morning/evening summer/winter past/future like/dislike love/hate
    agree/disagree deposit/withdraw credit/debit upgrade/downgrade compiled/interpreted
    male/female man/woman boy/girl husband/wife mother/father son/daughter brother/sister
    attack/defend offense/defense win/loss arrive/depart arrival/departure entry/exit enter/exit
    login/logout connect/disconnect activate/deactivate freeze/unfreeze pause/resume minimum/max
        """
    )
)

_NEG_PREFIXES = ("un", "dis", "non", "de", "in", "im", "il", "ir", "anti")
_NEG_PREFIX_HEADS = frozenset(p[:2] for p in _NEG_PREFIXES)

_SYNONYM_GROUPS: tuple[tuple[str, ...], ...] = tuple(
    tuple(line.split())
    for line in """
    buy purchase purchasing buying bought
    big large huge bigger larger
    biggest largest
    small little tiny
    fast quick quickly rapid rapidly speedy fastest quickest faster quicker speed
    begin start commence beginning starting
    finish complete end
    movie film
    car automobile vehicle
    phone smartphone cellphone mobile
    computer pc
    approach technique strategy
    tip advice suggestion recommendation hint pointer
    recommend suggest
    fix repair resolve solve troubleshoot
    kill terminate
    remove delete eliminate erase rid
    show display
    utilize employ utilise
    obtain acquire
    change modify alter edit
    update upgrade
    price cost pricing costs prices
    cheap inexpensive affordable
    expensive costly pricey
    problem issue trouble
    error exception
    people person persons folks individuals
    kid child children kids
    doctor physician
    photo picture image pic photograph
    answer reply response
    email e-mail mail
    website site webpage
    app application apps
    database db
    javascript js
    typescript ts
    python py python3
    kubernetes k8s
    postgresql postgres psql
    go golang
    macos mac osx
    usa america
    uk britain
    author writer wrote write written
    tall high height tallest highest
    create make build generate making made creating
    learn study learning studying
    job career position
    dictionary dict
    information info detail details
    repository repo
    environment env
    variable var
    function func method
    argument arg parameter param
    message msg
    authentication auth
    administrator admin
    statistic stat stats statistics
    library lib
    package pkg
    directory dir folder
    read load
    ask request inquire
    money cash
    lose shed
    earn making
    improve enhance boost
    reduce decrease lower cut lessen
    increase raise boost
    smart intelligent clever
    happy glad
    hard difficult tough
    easy simple easiest simplest
    important significant crucial
    famous popular wellknown
    choose select pick
    find locate
    need require requirement
    reason cause causes reasons
    meaning mean means definition define
    purpose role goal aim objective
    main primary principal chief mainly primarily chiefly principally
    nicknamed dubbed
    born birthplace
    opposite antonym
    store save keep
    sign symptom
    illness disease sickness
    medicine medication drug
    instal install installation
    setup configure configuration config
    document doc docs documentation
    car auto
    film movie
    tv television
    exam examination test
    hour hr hrs
    minute min mins
    kilometer km kilometre kilometers kilometres kms
    gigabyte gb gigabytes
    megabyte mb megabytes
    kilobyte kb kilobytes
    terabyte tb terabytes
    kilogram kg kgs kilo kilos
    pound lb lbs
    gram g grams
    meter metre m
    centimeter cm centimetre
    mile mi
    foot feet ft
    inch inches
    celsius centigrade
    percent percentage %
    dollar usd $
    euro eur
    """.strip().splitlines()
)

# Task verbs / nouns -> task class.
_TASK_WORDS = {
    "summarize": "summarize",
    "summarise": "summarize",
    "summary": "summarize",
    "summarization": "summarize",
    "tldr": "summarize",
    "recap": "summarize",
    "condense": "summarize",
    "translate": "convert",
    "translation": "convert",
    "convert": "convert",
    "conversion": "convert",
    "transform": "convert",
    "port": "convert",
    "explain": "explain",
    "explanation": "explain",
    "describe": "explain",
    "description": "explain",
    "overview": "explain",
    "clarify": "explain",
    "elaborate": "explain",
    "list": "list",
    "enumerate": "list",
    "compare": "compare",
    "comparison": "compare",
    "contrast": "compare",
    "versus": "compare",
    "vs": "compare",
    "difference": "compare",
    "differences": "compare",
    "differ": "compare",
    "write": "create",
    "implement": "create",
    "implementation": "create",
    "generate": "create",
    "create": "create",
    "draft": "create",
    "compose": "create",
    "draw": "create",
    "sketch": "create",
    "outline": "create",
    "fix": "fix",
    "debug": "fix",
    "repair": "fix",
    "troubleshoot": "fix",
    "rewrite": "rewrite",
    "rephrase": "rewrite",
    "paraphrase": "rewrite",
    "reword": "rewrite",
    "proofread": "rewrite",
    "analyze": "analyze",
    "analyse": "analyze",
    "analysis": "analyze",
    "critique": "analyze",
    "review": "analyze",
    "evaluate": "analyze",
    "assess": "analyze",
    "grade": "analyze",
    "extract": "extract",
    "identify": "extract",
    "find": "extract",
    "define": "explain",
    "definition": "explain",
    "classify": "classify",
    "categorize": "classify",
    "categorise": "classify",
    "sentiment": "classify",
    "refactor": "refactor",
    "optimize": "refactor",
    "optimise": "refactor",
    "simplify": "refactor",
    "document": "document",
    "comment": "document",
    "comments": "document",
    "annotate": "document",
    "recommend": "recommend",
    "suggest": "recommend",
    "install": "install",
    "installation": "install",
    "setup": "install",
    "configure": "install",
    "deploy": "install",
}

_QUANTITY_AFTER_HOW = _words("""many much long often far old big tall large small fast heavy high deep wide expensive
    cheap hot cold soon early late frequently""")
_DURATION_AFTER_HOW = frozenset({"long", "soon", "often", "frequently", "early", "late"})
_TIME_NOUNS = _words("time year date day month hour age decade century season")
_NOT_A_KIND_NOUN = _words("""is are was were be been do does did can could should would will shall may might
    must has have had of the a an to in on at by for from with about as if i you we they he she it
    me us them my your our their his her its this that these those there here else exactly kind
    kinds type types sort sorts happens happened happen makes made make causes caused cause one
    ones""")
_THING = frozenset({"person", "place", "thing", "definition", "manner", "reason"})
_KIND_TYPES = {noun: _THING | {"quantity"} for noun in _words("number amount percentage size")}
"""``what`` / ``which`` + a noun asks for a person, place or thing ("Which countries signed...",
"What book introduced..."): compatible with who / where / how / why, not with when or how many
(unless the noun is a number or an amount)."""

_DIRECTION_MARKERS = frozenset({"to", "into", "towards", "->", "→"})

_KNOWN_ENTITIES = _words("""
    python java javascript typescript golang ruby php kotlin scala perl haskell elixir erlang
    clojure lua julia matlab fortran cobol powershell zsh django fastapi laravel nextjs nuxt
    jquery nodejs numpy pandas scipy pytorch tensorflow keras sklearn hadoop kafka airflow
    docker kubernetes terraform ansible jenkins nginx linux ubuntu debian fedora centos macos
    android ios iphone ipad firefox aws azure gcp heroku vercel netlify firebase supabase mysql
    postgresql sqlite mongodb redis elasticsearch cassandra dynamodb powerpoint gmail github
    gitlab bitbucket git svn vscode vim emacs intellij pycharm openai chatgpt gpt langchain
    llamaindex huggingface google microsoft facebook instagram twitter tiktok youtube netflix
    spotify airbnb tesla samsung nvidia intel amd ibm paypal shopify wordpress bitcoin ethereum
    json yaml xml csv html css sql http https ssh tcp udp dns api gpu cpu ram usb
    """)
"""Names that count as entities even when typed in lower case (only words that are not also
ordinary English words: "rust", "go", "swift", "word" only count when capitalised)."""


def _difference_phrase(match: str) -> str:
    middle = match.split(" ", 2)[2].rsplit(" ", 2)[0]
    return f"difference {middle} and"


_PHRASE_RULES: tuple[tuple[tuple[str, ...], str, str | Callable[[str], str]], ...] = (
    (("e.g", "i.e", "etc", "cf", "viz"), r"\b(?:e\.g|i\.e|etc|cf|viz)\b\.?", " "),
    (
        ("hundred", "thousand", "million", "billion"),
        r"\b(?:several|few|many|some|tens of|hundreds of) (?:hundred|thousand|million|billion)s?\b",
        "many",
    ),
    (
        ("hundreds", "thousands", "millions", "billions"),
        r"\b(?:hundreds|thousands|millions|billions)\b",
        "many",
    ),
    (("dollar",), r"\bu\.?s\.? dollars?\b", "USD"),
    (("united states",), r"\bunited states(?: of america)?\b", "USA"),
    (("u.s",), r"\bu\.s\.a?\.?(?=\s|$)", "USA"),
    (("united kingdom",), r"\bunited kingdom\b", "UK"),
    (("up",), r"\bset(?:ting)? up\b", "setup"),
    (("up",), r"\bsign(?:ing)? up\b", "signup"),
    (("log",), r"\blog(?:ging)? ?in\b", "login"),
    (("log",), r"\blog(?:ging)? ?out\b", "logout"),
    (("sum up",), r"\bsum up\b", "summarize"),
    (("up",), r"\bback(?:ing)? up\b", "backup"),
    (("tl",), r"\btl;?dr\b", "tldr"),
    (("pros and cons",), r"\bpros and cons\b", "proscons"),
    (("in order to",), r"\bin order to\b", "to"),
    (("as well as",), r"\bas well as\b", "and"),
    (("a lot of",), r"\ba lot of\b", "many"),
    (("lots of",), r"\blots of\b", "many"),
    (("what is the reason",), r"\bwhat is the reason\b", "why"),
    (("what are the reasons",), r"\bwhat are the reasons\b", "why"),
    (("for what reason",), r"\bfor what reason\b", "why"),
    (("in what way",), r"\bin what way\b", "how"),
    (("what is the way",), r"\bwhat is the way\b", "how"),
    (("what are the ways",), r"\bwhat are the ways\b", "how"),
    (("what is the best way",), r"\bwhat is the best way\b", "how"),
    (("what are the best ways",), r"\bwhat are the best ways\b", "how"),
    (("what are some ways",), r"\bwhat are some ways\b", "how"),
    (("what should i do to",), r"\bwhat should i do to\b", "how"),
    (("what can i do to",), r"\bwhat can i do to\b", "how"),
    (("what is the process",), r"\bwhat is the process\b", "how"),
    (("in what year",), r"\bin what year\b", "when"),
    (("at what time",), r"\bat what time\b", "when"),
    (("what time",), r"\bwhat time\b", "when"),
    (("in which year",), r"\bin which year\b", "when"),
    (("what year",), r"\bwhat year\b", "when"),
    (
        ("in what", "in which"),
        r"\bin (?:what|which) (country|city|town|place|state|region|continent|location)\b",
        r"where \1",
    ),
    (("stand for", "stands for"), r"\bstands? for\b", "abbreviation for"),
    (("known as",), r"\bknown as\b", "nicknamed"),
    (
        ("in the world", "whole world", "on earth", "planet earth", "on the planet"),
        r"\b(?:in the (?:whole )?world|on (?:planet )?earth|on the planet)\b",
        " ",
    ),
    (("how do you say",), r"\bhow do you say\b", "translate"),
    (("how to say",), r"\bhow to say\b", "translate"),
    (("what is the difference",), r"\bwhat is the difference\b", "difference"),
    (("what are the differences",), r"\bwhat are the differences\b", "differences"),
    (("different from",), r"\bhow (?:is|are) .{1,40}? different from\b", _difference_phrase),
    (("differ from",), r"\bhow (?:does|do) .{1,40}? differ from\b", _difference_phrase),
)
"""Phrase rewrites applied before tokenising (multi-word names, phrasal verbs, and question
phrasings that mean the same as a single question word)."""

_AM_PM = frozenset({"am", "pm"})
_MONTH_CONTEXT = _words(
    "in of early late mid during since until till by this next last every each from"
)
_AMBIGUOUS_TASK_WORDS = _words("""review list comment comments document draft outline sketch port grade setup install
    identify find summary""")
_VERB_SLOT_FILLERS = _words("please kindly just also quickly now then briefly carefully")
_VERB_SLOT_BEFORE = _words("to you and me us i we can could would will should pls plz")
_ENTITY_STOPWORDS = frozenset({"go", "it", "us"})
_DETERMINERS = _words("a an the my your our their his her its this that these those some any")
_PREPOSITIONS = _words(
    "of for in on at with by about from to into onto over under via without per as"
)
_DEFINITION_RE = re.compile(
    r"^\W*(?:what|who)\s+(?:is|are|was|were)\s+(?:an?\s+|the\s+)?[\w.+#-]++(?:\s+[\w.+#-]++)?\W*$"
    r"|\bwhat\s+(?:does|do|did)\b.{1,60}\bmean\b|\bmeaning of\b|\bdefin(?:e|ition)\b",
    re.I,
)

Rule = tuple[re.Pattern[str], str | Callable[[str], str]]


def _compile(pattern: str, repl: str | Callable[[str], str]) -> Rule:
    return re.compile(pattern, re.I), repl


def _apply(rule: Rule, text: str) -> str:
    pattern, repl = rule
    if isinstance(repl, str):
        return pattern.sub(repl, text)
    return pattern.sub(lambda m: repl(m.group()), text)


_CONTRACTION_RE = re.compile(r"n'?t\b|'(?:s|re|ve|ll|d|m)\b", re.I)
_COMPILED_CONTRACTIONS = [_compile(p, r) for p, r in _CONTRACTION_RULES]
_COMPILED_PHRASES = [(triggers, _compile(p, r)) for triggers, p, r in _PHRASE_RULES]
_TRIGGER_RE = re.compile(
    r"\b(?:"
    + "|".join(
        sorted(
            {re.escape(t) for triggers, _, _ in _PHRASE_RULES for t in triggers},
            key=len,
            reverse=True,
        )
    )
    + r")"
)


def _expand_contractions(text: str) -> str:
    if not _CONTRACTION_RE.search(text):
        return text
    for rule in _COMPILED_CONTRACTIONS:
        text = _apply(rule, text)
    return text


def _rewrite_phrases(text: str) -> str:
    """Phrase rewrites applied before tokenising (multi-word names, phrasal verbs, and question
    phrasings that mean the same as a single question word); each rule runs only when one of its
    trigger substrings occurs."""
    if not _TRIGGER_RE.search(text.lower()):
        return text
    lower = text.lower()
    for triggers, rule in _COMPILED_PHRASES:
        if any(t in lower for t in triggers):
            text = _apply(rule, text)
            lower = text.lower()
    return text


_PLAIN_STOPWORDS = _STOPWORDS - (
    _NEGATIONS
    | _ENTITY_STOPWORDS
    | _KNOWN_ENTITIES
    | set(_NUMBER_WORDS)
    | set(_SCALE_WORDS)
    | set(_WEAK_NUMBER_WORDS)
    | set(_MONTHS)
    | set(_WEEKDAYS)
    | _RELATIVE_DAYS
    | _AM_PM
    | set(_TASK_WORDS)
)
"""Stopwords that need no other treatment (the tokeniser's fast path)."""

_ANSWER_PARTICLE = re.compile(r"^\s*(?:no|nope|yes)\s*[,.!:;]\s*", re.I)
_NOT_FILLER = re.compile(
    r"\bnot\s+(?:sure|know|understand|remember|certain|clear)\b|\bno\s+(?:idea|clue)\b", re.I
)


def _number_forms() -> str:
    """Characters with a numeric value that are not decimal digits: vulgar fractions (½),
    superscripts (²), circled and parenthesised digits (①), Roman numeral signs (Ⅻ)."""
    blocks = ((0xB2, 0xBE), (0x2070, 0x209F), (0x2150, 0x218F), (0x2460, 0x24FF), (0x2776, 0x2793))
    return "".join(
        ch
        for lo, hi in blocks
        for ch in map(chr, range(lo, hi + 1))
        if unicodedata.numeric(ch, None) is not None and not ch.isdecimal()
    )


_NUMBER_FORMS = _number_forms()
_TOKEN_RE = re.compile(
    # a "-" directly before a number at a word start is a minus sign ("-40", not "3-5")
    r"(?:(?<![\w.,-])-)?(?:\$?\d+(?:[.,:/]\d+)*%?[A-Za-z]*|[" + _NUMBER_FORMS + r"])"
    r"|[A-Za-z_][A-Za-z0-9_]*(?:[.'][A-Za-z0-9_]+)*(?:\+\+|#)?|->|→"
)


def _ends_sentence(between: str) -> bool:
    """Whether the text between two tokens closes a sentence: it ends with ``.?!:;`` or a line
    break, then only whitespace (a linear test; a ``[.?!:;\\n]\\s*$`` search is quadratic on
    runs of line breaks)."""
    stripped = between.rstrip()
    if len(stripped) < len(between) and "\n" in between[len(stripped) :]:
        return True
    return bool(stripped) and stripped[-1] in ".?!:;"


_NUMBER_SUFFIX = re.compile(r"^(\$?)(\d+(?:[.,:/]\d+)*)(%?)([A-Za-z]*)$")
_MULTIPLIERS = {
    "k": Decimal(1_000),
    "m": Decimal(1_000_000),
    "mm": Decimal(1_000_000),
    "b": Decimal(1_000_000_000),
    "bn": Decimal(1_000_000_000),
}
_DEC = Context(prec=MAX_PREC, Emax=MAX_EMAX, Emin=MIN_EMIN, traps=[])
"""Exact decimal arithmetic for numbers (sums and products of number words and multipliers are
exact at any size: "9" * 400, "half" + "billion" * 40 never overflow)."""
_NUMBER_VALUES = {word: Decimal(str(value)) for word, value in _NUMBER_WORDS.items()}
_SCALE_VALUES = {word: Decimal(value) for word, value in _SCALE_WORDS.items()}
_VERSION_CUES = _words("""version versions ver v release rel update patch build revision rev
    section chapter figure fig table step article clause paragraph part level""")
"""Words after which a decimal is a version or a section number, compared verbatim ("Python
3.10" is not "Python 3.1"; "2.50 dollars" is "2.5 dollars")."""
_ORDINAL_SUFFIXES = frozenset({"st", "nd", "rd", "th"})

# --------------------------------------------------------------------------------------------
# the score: a logistic model over pair features, fitted offline (see benchmarks/tune_guard.py)

SCORE_WEIGHTS: dict[str, float] = {
    "bias": -9.4505,
    "similarity": 13.7664,
    "unmatched_frac": -0.5752,
    "unmatched_max": -0.0488,
    "unmatched_min": 0.4235,
    "swap": -0.1206,
    "pure_swap": -0.3072,
    "pure_extra": -0.6798,
    "jaccard": -1.1289,
    "length_ratio": -0.3619,
}
"""Weights of the logistic score ``sigmoid(bias + sum(weight * feature))``; the feature names are
those returned by :func:`pair_features`. Fitted offline on the MeanCache QQP *validation* split
and the three slices of the project's dev set (never on a test split)."""


# --------------------------------------------------------------------------------------------
# text analysis


def _build_synonyms(extra: dict[str, str] | None = None) -> dict[str, str]:
    table: dict[str, str] = {}
    for group in _SYNONYM_GROUPS:
        canonical = _stem(group[0])
        for word in group:
            table.setdefault(word, canonical)
    for group in _SYNONYM_GROUPS:  # stems second, so a word's own group wins
        for word in group:
            table.setdefault(_stem(word), table[word])
    for key, value in (extra or {}).items():
        canonical = table.get(value.lower(), _stem(value.lower()))
        table[key.lower()] = canonical
        table.setdefault(value.lower(), canonical)
    return table


_IRREGULAR = {
    "children": "child",
    "men": "man",
    "women": "woman",
    "feet": "foot",
    "teeth": "tooth",
    "mice": "mouse",
    "geese": "goose",
    "was": "be",
    "were": "be",
    "ran": "run",
    "went": "go",
    "taught": "teach",
    "thought": "think",
    "bought": "buy",
    "wrote": "write",
    "written": "write",
    "made": "make",
    "done": "do",
    "began": "begin",
    "begun": "begin",
    "lost": "lose",
    "won": "win",
    "sold": "sell",
    "sent": "send",
    "built": "build",
    "paid": "pay",
    "said": "say",
    "took": "take",
    "taken": "take",
    "gave": "give",
    "given": "give",
    "found": "find",
    "left": "leave",
    "better": "better",
    "news": "news",
    "series": "series",
    "species": "species",
    "analysis": "analysis",
    "basis": "basis",
    "crisis": "crisis",
    "thesis": "thesis",
    "physics": "physics",
    "mathematics": "mathematics",
    "economics": "economics",
    "politics": "politics",
    "ethics": "ethics",
}

_SUFFIXES = (
    "izations",
    "ization",
    "isations",
    "isation",
    "ations",
    "ation",
    "ments",
    "ment",
    "ness",
    "ings",
    "ing",
    "edly",
    "ies",
    "ied",
    "ed",
    "ly",
    "es",
    "s",
)


@lru_cache(maxsize=65_536)
def _stem(word: str) -> str:
    """A light, deterministic stemmer: enough to equate plural/-ing/-ed/-ly/-ation forms."""
    if word in _IRREGULAR:
        return _IRREGULAR[word]
    if len(word) <= 3 or not word.isalpha():
        return word
    stem = word
    for suffix in _SUFFIXES:
        if stem.endswith(suffix) and len(stem) - len(suffix) >= 3:
            rest = stem[: -len(suffix)]
            if suffix == "s" and stem.endswith(("ss", "us", "is")):
                break
            if (suffix == "ed" and rest.endswith("e")) or not any(ch in "aeiouy" for ch in rest):
                continue  # speed, need / string, thing: try a shorter suffix
            stem = stem[: -len(suffix)] + ("i" if suffix in ("ies", "ied") else "")
            break
    if stem.endswith("e") and len(stem) > 3:
        stem = stem[:-1]
    elif stem.endswith("y") and len(stem) > 3:
        stem = stem[:-1] + "i"
    if len(stem) > 3 and stem[-1] == stem[-2] and stem[-1] not in "aeiouls":
        stem = stem[:-1]
    return stem


_SYNONYMS = _build_synonyms()


@dataclass(frozen=True, slots=True)
class _Analysis:
    """Everything the checks need about one text (computed once per text)."""

    words: tuple[str, ...]  # lower-case tokens, contractions expanded
    content: tuple[str, ...]  # canonical stems of content words, in order
    content_pos: tuple[int, ...]  # index in ``words`` of each content word
    content_set: frozenset[str]
    all_stems: frozenset[str]  # canonical stems of every token (for entity lookup)
    entities: frozenset[str]  # canonical stems of entity tokens
    acronyms: frozenset[str]  # lower-cased all-caps tokens of 2-5 letters
    canons: tuple[str, ...]  # canonical form per word ("" for function words)
    numbers: tuple[str, ...]  # strong numbers, in order of appearance
    weak_numbers: frozenset[str]
    negations: int  # negation cues, a filler "I don't know how to" aside
    tasks: frozenset[str]
    qtypes: frozenset[str]
    roles: frozenset[tuple[str, str]]  # (word, "src"|"dst") around direction markers
    raw_lower: frozenset[str]  # lower-case surface tokens (for antonym lookup)
    fuzzy: _FuzzyIndex  # typo-tolerant lookup into all_stems
    spans: _SpanIndex  # acronym -> the words whose initials spell it


def _canon(word: str, synonyms: dict[str, str], stem: bool = True) -> str:
    mapped = synonyms.get(word)
    if mapped is not None or not stem:
        return mapped or word
    stem_ = _stem(word)
    mapped = synonyms.get(stem_)
    return mapped if mapped is not None else stem_


def _format_number(value: Decimal) -> str:
    """The canonical spelling of an exact number: no exponent, no trailing zeros ("2.50" ->
    "2.5", 5E+5 -> "500000"), however large."""
    if not value:
        return "0"
    return format(_DEC.normalize(value), "f")


def _is_number_token(lower: str) -> bool:
    return (
        lower[0].isdigit()
        or lower[0] in _NUMBER_FORMS
        or lower[0] == "$"
        or (lower[0] == "-" and lower != "->")
    )


def _parse_numeric(token: str, version: bool = False) -> tuple[str | None, str | None, bool]:
    """A numeric token -> (canonical value, trailing unit word, is_ordinal).

    A decimal keeps a significant trailing zero when ``version`` is true (it follows a version cue
    or a technology name: "Python 3.10" is not "Python 3.1", "3.0" is "3"); otherwise it is a
    quantity and "2.50" equals "2.5". A leading "-" is a
    minus sign; a number-form character (½, ², ①) counts with its numeric value.
    """
    sign = "-" if token[:1] == "-" else ""
    token = token[len(sign) :]
    if len(token) == 1 and token in _NUMBER_FORMS:
        value = _format_number(Decimal(repr(unicodedata.numeric(token))))
        return (sign + value if value != "0" else value), None, False
    match = _NUMBER_SUFFIX.match(token)
    if match is None:
        return None, None, False
    currency, digits, percent, suffix = match.groups()
    suffix = suffix.lower()
    unit: str | None = None
    ordinal = False
    if re.fullmatch(r"\d{1,3}(?:,\d{3})+", digits):
        digits = digits.replace(",", "")
    value = digits
    if re.fullmatch(r"\d+(?:\.\d+)?", digits):
        number = Decimal(digits)
        if suffix in _MULTIPLIERS:
            number = _DEC.multiply(number, _MULTIPLIERS[suffix])
        elif suffix in _ORDINAL_SUFFIXES:
            ordinal = True
        elif suffix:
            unit = suffix
        plain = not (currency or percent or suffix)
        # A version keeps a significant trailing zero ("3.10" is not "3.1"); "3.0" is still "3".
        significant = "." in digits and bool(digits.partition(".")[2].strip("0"))
        value = digits if significant and version and plain else _format_number(number)
    elif suffix:
        unit = suffix
    if sign and value != "0":
        value = sign + value
    if percent:
        value += "%"
    return value, unit, ordinal


def _names_version(previous: str, opens_text: bool) -> bool:
    """Whether a decimal after the token ``previous`` is a version or section number: after a
    version cue ("version", "v", "release", "section"...), a technology name ("Python 3.10") or
    a capitalised word inside the text ("CMake 3.20"), but not after the text's first word: "Is
    2.50 a good price?" is a quantity."""
    lower = previous.lower()
    if lower in _VERSION_CUES or lower in _KNOWN_ENTITIES:
        return True
    return not opens_text and not previous.islower()


def _extends(pending: Decimal, value: Decimal) -> bool:
    """Whether a number word adds to the pending number: "twenty five", "hundred twenty"."""
    if not _DEC.remainder(pending, 100):
        return value < 100
    return pending >= 20 and not _DEC.remainder(pending, 10) and value < 10


def _analyse_uncached(text: str, synonyms: dict[str, str]) -> _Analysis:
    text = text.replace("\u2019", "'").replace("\u2018", "'").replace("\u2212", "-")
    text = _ANSWER_PARTICLE.sub("", text)
    text = _rewrite_phrases(_expand_contractions(text))
    filler_negation = bool(_NOT_FILLER.search(text))
    raw_tokens: list[tuple[str, bool]] = []  # (token, sentence-initial)
    sentence_start = True
    pos = 0
    for match in _TOKEN_RE.finditer(text):
        start = match.start()
        if start - pos > 1 or (start > pos and text[pos] != " "):
            between = text[pos:start]
            if _ends_sentence(between) or '"' in between or "'" in between:
                sentence_start = True
        raw_tokens.append((match.group(), sentence_start))
        sentence_start = False
        pos = match.end()

    words: list[str] = []  # lower-case surface tokens (numbers canonicalised)
    canons: list[str] = []  # canonical stem per word ("" for function words)
    content: list[str] = []
    content_pos: list[int] = []
    all_stems: set[str] = set()
    entities: set[str] = set()
    acronyms: set[str] = set()
    numbers: list[str] = []
    weak: set[str] = set()
    tasks: set[str] = set()
    negations = 0
    pending_number: Decimal | None = None

    def add(word: str, canon: str) -> None:
        words.append(word)
        canons.append(canon)

    def add_content(word: str, canon: str) -> None:
        content.append(canon)
        content_pos.append(len(words))
        add(word, canon)

    def flush_number() -> None:
        nonlocal pending_number
        if pending_number is not None:
            numbers.append(_format_number(pending_number))
            pending_number = None

    n_tokens = len(raw_tokens)
    for index, (token, initial) in enumerate(raw_tokens):
        lower = token.lower()
        if lower in _PLAIN_STOPWORDS and (initial or token.islower()):
            following = raw_tokens[index + 1][0].lower() if index + 1 < n_tokens else ""
            # "two hundred and six": the "and" continues the number
            continues = lower == "and" and following in _NUMBER_WORDS
            if pending_number is not None and not (
                continues and not _DEC.remainder(pending_number, 100)
            ):
                flush_number()
            all_stems.add(lower)
            add(lower, "")
            continue
        prev = words[-1] if words else ""
        if _is_number_token(lower):
            flush_number()
            before = raw_tokens[index - 1][0] if index > 0 else ""
            if lower[0] == "-" and before and _is_number_token(before.lower()):
                lower = lower[1:]  # "ages 5 -10": a range, not a minus sign
            elif before.lower() in ("minus", "negative") and lower[0] != "-":
                earlier = raw_tokens[index - 2][0].lower() if index > 1 else ""
                if not (earlier and _is_number_token(earlier)):
                    lower = "-" + lower  # "minus 5 degrees" is "-5", but "10 minus 5" is not
            version = bool(before) and _names_version(before, opens_text=index == 1)
            value, unit, ordinal = _parse_numeric(lower, version)
            if value is not None:
                (weak.add(value) if ordinal else numbers.append(value))
                all_stems.add(value)
                add(value, value)
            if unit:
                if unit in _AM_PM:
                    numbers.append(unit)
                    continue
                canon = _canon(unit, synonyms)
                all_stems.add(canon)
                add_content(unit, canon)
            continue
        if lower in _NUMBER_WORDS or lower in _SCALE_WORDS:
            if lower in _SCALE_WORDS:
                base = Decimal(1) if pending_number is None else pending_number
                pending_number = _DEC.multiply(base, _SCALE_VALUES[lower])
            elif pending_number is not None and _extends(pending_number, _NUMBER_VALUES[lower]):
                pending_number = _DEC.add(pending_number, _NUMBER_VALUES[lower])
            else:
                flush_number()
                pending_number = _NUMBER_VALUES[lower]
            add(lower, lower)
            continue
        flush_number()
        if lower in _AM_PM and prev[:1].isdigit():
            numbers.append(lower)
            add(lower, lower)
            continue
        if lower in _WEAK_NUMBER_WORDS:
            weak.add("last" if lower == "last" else str(_WEAK_NUMBER_WORDS[lower]))
            add(lower, lower)
            continue
        if lower in _ROMAN and token.isupper():
            numbers.append(str(_ROMAN[lower]))
            add(lower, lower)
            continue
        nxt = raw_tokens[index + 1][0] if index + 1 < n_tokens else ""
        if lower in _MONTHS and _is_month(token, lower, initial, prev, nxt):
            numbers.append(f"month{_MONTHS[lower]}")
            add(lower, lower)
            continue
        if (
            lower in _MONTH_ABBR
            and token[0].isupper()
            and (nxt[:1].isdigit() or prev[:1].isdigit())
        ):
            numbers.append(f"month{_MONTH_ABBR[lower]}")
            add(lower, lower)
            continue
        if lower in _WEEKDAYS:
            numbers.append(f"weekday{_WEEKDAYS[lower]}")
            add(lower, lower)
            continue
        if lower in _RELATIVE_DAYS:
            numbers.append(lower)
            add(lower, lower)
            continue
        if lower in _NEGATIONS:
            negations += 1
            add(lower, "")
            continue
        task = _TASK_WORDS.get(lower)
        if task is not None and (lower not in _AMBIGUOUS_TASK_WORDS or _verb_slot(words)):
            tasks.add(task)
        else:
            task = None
        if token == "US":
            lower = "usa"
        identifier = _is_identifier(token)
        canon = _canon(lower, synonyms, stem=not identifier)
        if "." in lower and identifier:
            all_stems.update(part for part in lower.split(".") if part)
        all_stems.add(canon)
        entity = _is_entity(token, initial, lower)
        if lower in _STOPWORDS and not (entity and lower in _ENTITY_STOPWORDS):
            add(lower, "")
            continue
        if entity:
            entities.add(canon)
            if 2 <= len(token) <= 5 and token.isalpha() and token.isupper():
                acronyms.add(canon)
        add_content(lower, canon)
    flush_number()

    if filler_negation and negations:
        negations -= 1
    lower_words = tuple(words)
    return _Analysis(
        words=lower_words,
        content=tuple(content),
        content_pos=tuple(content_pos),
        content_set=frozenset(content),
        all_stems=frozenset(all_stems),
        entities=frozenset(entities),
        acronyms=frozenset(acronyms),
        canons=tuple(canons),
        numbers=tuple(numbers),
        weak_numbers=frozenset(weak),
        negations=negations,
        tasks=frozenset(tasks),
        qtypes=_question_types(lower_words, text),
        roles=_direction_roles(lower_words, tuple(canons)),
        raw_lower=frozenset(c for c in canons if c) | frozenset(lower_words),
        fuzzy=_FuzzyIndex(all_stems),
        spans=_SpanIndex(lower_words, tuple(canons)),
    )


def _is_month(token: str, lower: str, initial: bool, prev: str, nxt: str) -> bool:
    if nxt[:1].isdigit() or prev[:1].isdigit():
        return True
    if lower in {"may", "march"}:
        # "May I ...", "march on": only a month next to a number or after "in/of/early..."
        return prev in _MONTH_CONTEXT
    return token[0].isupper() or prev in _MONTH_CONTEXT


def _verb_slot(words: list[str]) -> bool:
    """Whether the next word sits where an imperative/task verb would ("Review this", "please
    review", "can you review", "how to review"), so "review"/"list" are tasks, not nouns."""
    for word in reversed(words):
        if word in _VERB_SLOT_FILLERS:
            continue
        return word in _VERB_SLOT_BEFORE
    return True


def _is_identifier(token: str) -> bool:
    """Acronyms, identifiers and product names: compared verbatim, never stemmed."""
    if token.isalpha() and (token.islower() or token.istitle()):
        return False
    if 2 <= len(token) <= 5 and token.isupper():
        return True  # NASA, HTTPS (longer all-caps words are shouting, not acronyms)
    if any(ch.isdigit() for ch in token) or "+" in token or "#" in token or "_" in token:
        return True
    if "." in token and not token.endswith("."):
        return True
    return not token.isupper() and any(ch.isupper() for ch in token[1:])  # iPhone, macOS


def _is_entity(token: str, initial: bool, lower: str) -> bool:
    if token.islower():
        return lower in _KNOWN_ENTITIES
    if lower in _KNOWN_ENTITIES or _is_identifier(token):
        return True
    if token.isupper() and len(token) > 5:
        return False
    return (
        token[0].isupper()
        and not initial
        and (lower not in _STOPWORDS or lower in _ENTITY_STOPWORDS)
    )


def _question_types(words: tuple[str, ...], text: str) -> frozenset[str]:
    """Question-word classes: manner, reason, time, place, person, quantity, definition. A bare
    ``what`` and yes/no questions are compatible with everything and yield nothing; ``what`` /
    ``which`` + a noun yields every class but time and quantity (see :data:`_THING`)."""
    found: set[str] = set()
    n = len(words)
    for i, word in enumerate(words):
        nxt = words[i + 1] if i + 1 < n else ""
        if word == "how":
            if nxt == "come":
                found.add("reason")
            elif nxt in _DURATION_AFTER_HOW:
                found.add("time" if nxt in {"soon", "early", "late"} else "quantity")
            elif nxt in _QUANTITY_AFTER_HOW:
                found.add("quantity")
            else:
                found.add("manner")
        elif word == "why":
            found.add("reason")
        elif word == "when":
            # "when" inside a clause after the question ("what to do when...") is a condition
            if i == 0 or words[i - 1] in {"and", "or", "but", "so", "exactly", "then"}:
                found.add("time")
        elif word == "where":
            if i == 0 or words[i - 1] in {"and", "or", "but", "so", "exactly", "then"}:
                found.add("place")
        elif word in {"who", "whom", "whose"}:
            if i == 0 or words[i - 1] in {"and", "or", "but", "so", "exactly", "then"}:
                found.add("person")
        elif word in {"what", "which"}:
            if nxt in _TIME_NOUNS:
                found.add("time")
            elif nxt in {"for"} and i + 2 >= n:
                found.add("reason")
            elif nxt and nxt not in _NOT_A_KIND_NOUN:
                found.update(_KIND_TYPES.get(nxt, _THING))
    if _DEFINITION_RE.search(text):
        found.add("definition")
    return frozenset(found)


def _direction_roles(words: tuple[str, ...], canons: tuple[str, ...]) -> frozenset[tuple[str, str]]:
    """(word, "src"|"dst") roles around direction markers: "from A to B", "A to B", "A into B",
    "to B from A", "A faster than B" (A is the source, B the target)."""
    n = len(words)

    def run_left(i: int) -> list[str]:
        out: list[str] = []
        j = i - 1
        while j >= 0 and len(out) < 3 and canons[j]:
            out.append(canons[j])
            j -= 1
        return out

    def run_right(i: int) -> list[str]:
        j = i + 1
        while j < n and words[j] in _DETERMINERS:
            j += 1
        out: list[str] = []
        while j < n and len(out) < 3 and canons[j]:
            out.append(canons[j])
            j += 1
        return out

    roles: set[tuple[str, str]] = set()
    for i, word in enumerate(words):
        if word in _DIRECTION_MARKERS:
            roles.update((w, "src") for w in run_left(i))
            roles.update((w, "dst") for w in run_right(i))
        elif word == "from":
            roles.update((w, "src") for w in run_right(i))
        elif word == "than":
            roles.update((w, "dst") for w in run_right(i))
            j = i - 1
            while j >= 0 and i - j <= 8:
                if words[j] in {"more", "less"} or (
                    words[j].endswith("er") or words[j] in {"better", "worse", "fewer"}
                ):
                    k = j - 1
                    while k >= 0 and not canons[k] and i - k <= 10:
                        k -= 1
                    if k >= 0 and canons[k]:
                        roles.add((canons[k], "src"))
                    break
                j -= 1
    return frozenset(roles)


@lru_cache(maxsize=16_384)
def _analyse_default(text: str) -> _Analysis:
    return _analyse_uncached(text, _SYNONYMS)


# --------------------------------------------------------------------------------------------
# matching helpers


def _edit_distance_le(a: str, b: str, limit: int) -> bool:
    """Whether the Damerau-Levenshtein (adjacent transposition) distance is <= ``limit``."""
    if abs(len(a) - len(b)) > limit:
        return False
    prev2: list[int] = []
    prev = list(range(len(b) + 1))
    for i in range(1, len(a) + 1):
        cur = [i] + [0] * len(b)
        row_min = cur[0]
        for j in range(1, len(b) + 1):
            cost = 0 if a[i - 1] == b[j - 1] else 1
            value = min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + cost)
            if i > 1 and j > 1 and a[i - 1] == b[j - 2] and a[i - 2] == b[j - 1]:
                value = min(value, prev2[j - 2] + 1)
            cur[j] = value
            row_min = min(row_min, value)
        if row_min > limit:
            return False
        prev2, prev = prev, cur
    return prev[len(b)] <= limit


_FUZZY_MAX_LEN = 40
"""Longer words (no English word; alphabetic identifiers, garbage) only match exactly."""
_ENTITY_TYPO_MIN_LEN = 6
"""An entity tolerates one typo only when both spellings have at least this many letters: shorter
names one letter apart are usually other names (Iran / Iraq, Mali / Bali)."""
_DEMONYM_SUFFIXES = ("n", "an", "ian", "ean", "ese", "i")
"""An entity matches itself plus one of these endings (India / Indian, Asia / Asian, Europe /
European, Japan / Japanese, Israel / Israeli), not any longer word it starts (India / Indiana)."""
_CONFUSABLE_NAMES: frozenset[frozenset[str]] = frozenset(
    frozenset(_stem(w) for w in pair.split("/"))
    for pair in _split("""india/indiana niger/nigeria niger/nigerian iran/iraq iceland/ireland
        colombia/columbia dominica/dominican granada/grenada austria/australia austin/austen
        slovakia/slovenia gambia/zambia""")
)
"""Different places one letter or a demonym ending apart: never typos of one another."""
_KNOWN_STEMS = frozenset(_KNOWN_ENTITIES | {_stem(w) for w in _KNOWN_ENTITIES})
"""Two known technology names are two names, however close their spellings."""


def _fuzzy_equal(a: str, b: str, strict: bool = False) -> bool:
    """Typo tolerance between two (already canonical) stems: the same first letter, at most one
    edit (Damerau-Levenshtein), both at least 4 letters; unless ``strict``, a stem of 5+ letters
    also matches a longer one it starts.

    ``strict`` (entities): the same stem ("YouTube" / "youtube", "AIIMS" / "aiims"), a demonym
    ending (:data:`_DEMONYM_SUFFIXES`), or one edit when both have at least
    :data:`_ENTITY_TYPO_MIN_LEN` letters; never between two known names or a pair of
    :data:`_CONFUSABLE_NAMES` (India / Indiana, Iran / Iraq, Iceland / Ireland).
    """
    if a == b:
        return True
    short = min(len(a), len(b))
    if (
        short < 4
        or max(len(a), len(b)) > _FUZZY_MAX_LEN
        or a[0] != b[0]
        or not (a.isalpha() and b.isalpha())
    ):
        return False
    if strict:
        if _stem(a) == _stem(b):
            return True
        if frozenset((a, b)) in _CONFUSABLE_NAMES or (a in _KNOWN_STEMS and b in _KNOWN_STEMS):
            return False
        longer, shorter = (a, b) if len(a) > len(b) else (b, a)
        if longer.startswith(shorter) and longer[len(shorter) :] in _DEMONYM_SUFFIXES:
            return True
        if short < _ENTITY_TYPO_MIN_LEN:
            return False
    elif short >= 5 and (a.startswith(b) or b.startswith(a)):
        return True
    return _edit_distance_le(a, b, 1)


def _deletions(word: str) -> set[str]:
    """``word`` and every string one deletion away: two words within one edit share one."""
    return {word, *(word[:i] + word[i + 1 :] for i in range(len(word)))}


class _FuzzyIndex:
    """Typo-tolerant lookup into one text's stems (:func:`_fuzzy_equal`), built on first use.

    One-deletion keys find the stems within one edit and a sorted list finds prefixes, so a
    lookup costs O(word length) whatever the number of stems (comparing every word of one text
    with every word of the other is quadratic on long texts).
    """

    __slots__ = ("_built", "_by_key", "_by_length", "_by_stem", "_sorted", "_stems", "_stems_set")

    def __init__(self, stems: Iterable[str]) -> None:
        self._stems = tuple(s for s in stems if 4 <= len(s) <= _FUZZY_MAX_LEN and s.isalpha())
        self._built = False
        self._by_key: dict[str, list[str]] = {}
        self._by_length: dict[int, set[str]] = {}
        self._by_stem: dict[str, list[str]] = {}
        self._sorted: list[str] = []
        self._stems_set: frozenset[str] = frozenset()

    def _build(self) -> None:
        for stem in self._stems:
            for key in _deletions(stem):
                self._by_key.setdefault(key, []).append(stem)
            self._by_length.setdefault(len(stem), set()).add(stem)
            self._by_stem.setdefault(_stem(stem), []).append(stem)
        self._sorted = sorted(self._stems)
        self._stems_set = frozenset(self._stems)
        self._built = True

    def match(self, word: str, strict: bool) -> bool:
        """Whether a stem equals ``word`` up to a typo (or a prefix, unless ``strict``)."""
        if not (4 <= len(word) <= _FUZZY_MAX_LEN and word.isalpha()) or not self._stems:
            return False
        if not self._built:
            self._build()
        if not strict and len(word) >= 5:
            after = bisect_right(self._sorted, word)  # a longer stem that starts with ``word``
            if after < len(self._sorted) and self._sorted[after].startswith(word):
                return True
            for length, group in self._by_length.items():  # a shorter stem ``word`` starts with
                if 5 <= length < len(word) and word[:length] in group:
                    return True
        if strict:  # the same stem, a demonym ending
            stems = self._stems_set
            if any(_fuzzy_equal(word, stem, strict) for stem in self._by_stem.get(_stem(word), ())):
                return True
            for suffix in _DEMONYM_SUFFIXES:
                longer = word + suffix
                if longer in stems and _fuzzy_equal(word, longer, strict):
                    return True
                shorter = word[: -len(suffix)]
                if (
                    word.endswith(suffix)
                    and shorter in stems
                    and _fuzzy_equal(word, shorter, strict)
                ):
                    return True
        return any(
            _fuzzy_equal(word, stem, strict)
            for key in _deletions(word)
            for stem in self._by_key.get(key, ())
        )


_ACRONYM_FILLERS = frozenset({"of", "and", "the", "for", "&"})


class _SpanIndex:
    """For each acronym length, the first run of words whose initials spell each acronym
    ("natural language processing" -> "nlp"; "of", "and", "the", "for" inside a run are
    skipped), built on first use: one lookup per acronym instead of a scan of the text."""

    __slots__ = ("_canons", "_tables", "_words")

    def __init__(self, words: tuple[str, ...], canons: tuple[str, ...]) -> None:
        self._words, self._canons = words, canons
        self._tables: dict[int, dict[str, tuple[int, int]]] = {}

    def span(self, acronym: str) -> set[str]:
        """The canonical words whose initials spell ``acronym``, or an empty set."""
        size = len(acronym)
        if not size:
            return set()
        table = self._tables.get(size)
        if table is None:
            table = self._tables[size] = self._build(size)
        found = table.get(acronym)
        if found is None:
            return set()
        return {c for c in self._canons[found[0] : found[1]] if c}

    def _build(self, size: int) -> dict[str, tuple[int, int]]:
        words = self._words
        kept = [j for j, word in enumerate(words) if word not in _ACRONYM_FILLERS]
        initials = "".join(words[j][:1] for j in kept)
        table: dict[str, tuple[int, int]] = {}
        p = 0  # index in ``kept`` of the first word after i that is not a filler
        for i, word in enumerate(words):
            while p < len(kept) and kept[p] <= i:
                p += 1
            if not word:
                continue
            if size == 1:
                table.setdefault(word[0], (i, i + 1))
                continue
            last = p + size - 2
            if last >= len(kept):
                break
            table.setdefault(word[0] + initials[p : p + size - 1], (i, kept[last] + 1))
        return table


def _unmatched(words: frozenset[str], other: _Analysis, strict: bool = False) -> list[str]:
    """The words with no exact or typo-tolerant counterpart in ``other``."""
    out = []
    stems, fuzzy = other.all_stems, other.fuzzy
    for word in words:
        if word in stems or fuzzy.match(word, strict):
            continue
        out.append(word)
    return out


def _acronym_span(acronym: str, q: _Analysis) -> set[str]:
    """The canonical words of ``q`` whose initials spell ``acronym`` ("NLP" -> natural language
    processing), or an empty set."""
    return q.spans.span(acronym)


def _unmatched_entities(qa: _Analysis, qb: _Analysis) -> list[str]:
    """Entities of ``qa`` with no counterpart in ``qb`` (exact, typo, dotted-name component,
    acronym <-> expansion)."""
    covered: set[str] = set()
    for acronym in qb.acronyms - qa.all_stems:
        covered |= _acronym_span(acronym, qa)
    out = []
    for entity in qa.entities:
        if entity in qb.all_stems or entity in covered:
            continue
        if "." in entity and any(
            len(part) >= 3 and part in qb.all_stems for part in entity.split(".")
        ):
            continue
        if entity in qa.acronyms and _acronym_span(entity, qb):
            continue
        if qb.fuzzy.match(entity, strict=True):
            continue
        out.append(entity)
    return out


def _has_prefix_flip(a: frozenset[str], b: frozenset[str]) -> tuple[str, str] | None:
    """A word in ``b`` that is a word of ``a`` with a negating prefix (safe -> unsafe)."""
    for word in b - a:
        if len(word) < 6 or word[:2] not in _NEG_PREFIX_HEADS:
            continue
        for prefix in _NEG_PREFIXES:
            if word.startswith(prefix) and len(word) - len(prefix) >= 4:
                base = word[len(prefix) :]
                if base in a:
                    return base, word
    return None


def _numbers_differ(qa: _Analysis, qb: _Analysis, strict: bool = True) -> str | None:
    if not (qa.numbers or qb.numbers or qa.weak_numbers or qb.weak_numbers):
        return None
    strong_a, strong_b = Counter(qa.numbers), Counter(qb.numbers)
    only_a = [v for v in (strong_a - strong_b) if v not in qb.weak_numbers]
    only_b = [v for v in (strong_b - strong_a) if v not in qa.weak_numbers]
    if (only_a or only_b) if strict else (only_a and only_b):
        return f"numbers differ: {sorted(only_a)} vs {sorted(only_b)}"
    weak_a = qa.weak_numbers - set(qb.numbers)
    weak_b = qb.weak_numbers - set(qa.numbers)
    if weak_a and weak_b and weak_a != weak_b:
        return f"ordinals differ: {sorted(weak_a)} vs {sorted(weak_b)}"
    if qa.numbers != qb.numbers and len(qa.numbers) > 1 and strong_a == strong_b:
        return f"numbers in a different order: {list(qa.numbers)} vs {list(qb.numbers)}"
    return None


# --------------------------------------------------------------------------------------------
# features and score


def pair_features(query: str, candidate: str, similarity: float) -> dict[str, float]:
    """The lexical features the score is computed from (exposed for tuning and explanation)."""
    return _features(_analyse_default(query), _analyse_default(candidate), similarity)


def _unmatched_pair(qa: _Analysis, qb: _Analysis) -> tuple[list[str], list[str]]:
    """The content words of each side with no counterpart in the other."""
    return _unmatched(qa.content_set, qb), _unmatched(qb.content_set, qa)


def _features(
    qa: _Analysis,
    qb: _Analysis,
    similarity: float,
    unmatched: tuple[list[str], list[str]] | None = None,
) -> dict[str, float]:
    set_a, set_b = qa.content_set, qb.content_set
    un_a, un_b = unmatched or _unmatched_pair(qa, qb)
    n_a, n_b = len(set_a), len(set_b)
    union = len(set_a | set_b) or 1
    total = n_a + n_b or 1
    words_a, words_b = len(qa.words) or 1, len(qb.words) or 1
    # the same content words in the same order except for the unmatched ones, which sit in the
    # same slots: a pure substitution ("reset my password" / "reset my username")
    frame_a = [w for w in qa.content if w not in un_a]
    frame_b = [w for w in qb.content if w not in un_b]
    pure = bool(un_a or un_b) and frame_a == frame_b
    return {
        "similarity": similarity,
        "unmatched_frac": (len(un_a) + len(un_b)) / total,
        "unmatched_max": float(max(len(un_a), len(un_b))),
        "unmatched_min": float(min(len(un_a), len(un_b))),
        "swap": 1.0 if un_a and un_b else 0.0,
        "pure_swap": 1.0 if pure and un_a and un_b else 0.0,
        "pure_extra": 1.0 if pure and not (un_a and un_b) else 0.0,
        "jaccard": len(set_a & set_b) / union,
        "length_ratio": min(words_a, words_b) / max(words_a, words_b),
    }


def _score(features: dict[str, float]) -> float:
    z = SCORE_WEIGHTS.get("bias", 0.0)
    for name, value in features.items():
        z += SCORE_WEIGHTS.get(name, 0.0) * value
    if z >= 0:
        return 1.0 / (1.0 + math.exp(-z))
    ez = math.exp(z)
    return ez / (1.0 + ez)


# --------------------------------------------------------------------------------------------
# the guard


class VerificationGuard:
    """Verifies that a cached query's answer can be reused for a new query (see module docs)."""

    def __init__(self, config: GuardConfig | None = None) -> None:
        self.config = config or GuardConfig()
        self._custom = bool(self.config.synonyms)
        self._synonyms = _build_synonyms(self.config.synonyms) if self._custom else _SYNONYMS
        antonyms: dict[str, set[str]] = {}
        for x, y in (*_ANTONYM_PAIRS, *self.config.antonyms):
            cx, cy = x.lower(), y.lower()
            antonyms.setdefault(cx, set()).add(cy)
            antonyms.setdefault(cy, set()).add(cx)
        self._antonyms = antonyms
        self._analyse = _analyse_default if not self._custom else self._analyse_custom

    @lru_cache(maxsize=4_096)  # noqa: B019 - one guard per engine; bounded
    def _analyse_custom(self, text: str) -> _Analysis:
        return _analyse_uncached(text, self._synonyms)

    def verify(self, query: str, candidate: str, similarity: float) -> GuardVerdict:
        """Decide whether ``candidate``'s cached answer may be served for ``query``."""
        cfg = self.config
        if not cfg.enabled:
            return GuardVerdict(True, None, 1.0, "guard disabled")
        if similarity < cfg.min_similarity:
            return GuardVerdict(
                False, "similarity", 0.0, f"similarity {similarity:.3f} < {cfg.min_similarity}"
            )
        if query.strip().lower() == candidate.strip().lower():
            return GuardVerdict(True, None, 1.0, "same text")
        if max(len(query), len(candidate)) > cfg.max_chars:
            cap = f"max_chars={cfg.max_chars} characters"
            return GuardVerdict(False, "too_long", 0.0, f"a text has more than {cap}")
        if _longer_than(query, cfg.max_words) or _longer_than(candidate, cfg.max_words):
            cap = f"max_words={cfg.max_words} words"
            return GuardVerdict(False, "too_long", 0.0, f"a text has more than {cap}")
        qa, qb = self._analyse(query), self._analyse(candidate)

        strict = max(len(qa.words), len(qb.words)) <= cfg.strict_max_words
        pair: list[tuple[list[str], list[str]]] = []  # the unmatched words, computed once

        def unmatched() -> tuple[list[str], list[str]]:
            if not pair:
                pair.append(_unmatched_pair(qa, qb))
            return pair[0]

        if cfg.check_numbers:
            detail = _numbers_differ(qa, qb, strict)
            if detail:
                return GuardVerdict(False, "numbers", 0.0, detail)
        features: dict[str, float] | None = None
        if cfg.check_negation and strict and qa.negations != qb.negations:
            features = _features(qa, qb, similarity, unmatched())
            if features["unmatched_frac"] <= cfg.negation_max_unmatched:
                detail = f"negations differ: {qa.negations} vs {qb.negations}"
                return GuardVerdict(False, "negation", 0.0, detail)
        for reason, enabled, check in (
            ("polarity", cfg.check_polarity, self._polarity),
            ("entities", cfg.check_entities, self._entities),
            ("direction", cfg.check_direction, _direction),
            ("task", cfg.check_task, _task),
            ("substitution", cfg.check_substitution, lambda a, b: _substitution(a, b, unmatched())),
        ):
            if enabled and (detail := check(qa, qb)):
                return GuardVerdict(False, reason, 0.0, detail)
        if not cfg.use_score:
            return GuardVerdict(True, None, 1.0, "checks passed")
        score = _score(features or _features(qa, qb, similarity, unmatched()))
        if similarity >= cfg.accept_similarity:
            return GuardVerdict(True, None, score, "similarity above accept_similarity")
        if score < cfg.min_score:
            return GuardVerdict(
                False, "score", score, f"score {score:.3f} < {cfg.min_score} (lexical mismatch)"
            )
        return GuardVerdict(True, None, score, "checks passed")

    def _polarity(self, qa: _Analysis, qb: _Analysis) -> str | None:
        words_a, words_b = qa.raw_lower, qb.raw_lower
        for word in words_a - words_b:
            for opposite in self._antonyms.get(word, ()):
                if opposite in words_b and opposite not in words_a:
                    return f"opposite words: {word!r} vs {opposite!r}"
        flip = _has_prefix_flip(words_a, words_b) or _has_prefix_flip(words_b, words_a)
        if flip:
            return f"opposite words: {flip[0]!r} vs {flip[1]!r}"
        return None

    def _entities(self, qa: _Analysis, qb: _Analysis) -> str | None:
        un_a = _unmatched_entities(qa, qb)
        un_b = _unmatched_entities(qb, qa)
        if un_a and un_b:
            return f"different entities: {sorted(un_a)} vs {sorted(un_b)}"
        if (un_a or un_b) and self.config.entity_extra == "reject":
            return f"entity on one side only: {sorted(un_a or un_b)}"
        return None


def _longer_than(text: str, limit: int) -> bool:
    """Whether ``text`` has more than ``limit`` tokens (scans only up to the first ``limit + 1``)."""
    return sum(1 for _ in islice(_TOKEN_RE.finditer(text), limit + 1)) > limit


def _substitution(
    qa: _Analysis, qb: _Analysis, unmatched: tuple[list[str], list[str]]
) -> str | None:
    """Exactly one content word replaced by an unrelated one in the same slot, the rest equal
    ("reset my password" / "reset my username"); ``unmatched`` from :func:`_unmatched_pair`."""
    un_a, un_b = unmatched
    if len(un_a) != 1 or len(un_b) != 1:
        return None
    x, y = un_a[0], un_b[0]
    slots_a = [w if w != x else "_" for w in qa.content]
    slots_b = [w if w != y else "_" for w in qb.content]
    if slots_a == slots_b:
        return f"one word replaced: {x!r} vs {y!r}"
    return None


def _direction(qa: _Analysis, qb: _Analysis) -> str | None:
    flipped_a = flipped_b = ""
    for word, role in qa.roles:
        other = "dst" if role == "src" else "src"
        if (word, other) in qb.roles and (word, other) not in qa.roles:
            if role == "src":
                flipped_a = word
            else:
                flipped_b = word
    if flipped_a and flipped_b and flipped_a != flipped_b:
        return f"reversed direction: {flipped_a} -> {flipped_b} vs {flipped_b} -> {flipped_a}"
    swapped = _swapped_around_pivot(qa, qb)
    if swapped:
        x, v, y = swapped
        return f"roles swapped around {v!r}: {x} .. {y} vs {y} .. {x}"
    return None


def _swapped_around_pivot(qa: _Analysis, qb: _Analysis) -> tuple[str, str, str] | None:
    """Shared words x, v, y in the order x v y on one side and y v x on the other, with no
    preposition in between ("Does the Earth orbit the Sun" / "Does the Sun orbit the Earth";
    "version of Python" / "Python version" is a paraphrase)."""
    a, b = qa.content, qb.content
    if len(a) < 3 or len(b) < 3 or qa.content_set != qb.content_set:
        return None
    count_a, count_b = Counter(a), Counter(b)
    pos_a = {w: i for i, w in enumerate(a) if count_a[w] == 1}
    pos_b = {w: i for i, w in enumerate(b) if count_b[w] == 1 and w in pos_a}
    if len(pos_b) < 3:
        return None
    shared = sorted(pos_b, key=pos_a.__getitem__)
    if len(shared) > _PIVOT_MAX_WORDS:
        return None
    # A role swap keeps the rest of the sentence in place ("the frontend service calls the auth
    # service" / "the auth service calls the frontend service"); a reworded sentence
    # ("Kubernetes restarts a container when its probe fails" / "If a container's probe fails, it
    # is restarted by Kubernetes") moves many other words too, and is not a swap: at most one
    # pair of the other words may be the other way round. ``inversions[i]`` counts the pairs
    # word i is in, so the pairs among the words other than x and y are counted in O(1).
    order = [pos_b[w] for w in shared]
    n = len(order)
    inversions = [0] * n
    total = 0
    for i in range(n):
        for j in range(i + 1, n):
            if order[i] > order[j]:
                inversions[i] += 1
                inversions[j] += 1
                total += 1
    for i, x in enumerate(shared):
        for k in range(i + 2, n):
            y = shared[k]
            if pos_b[y] >= pos_b[x] or total - inversions[i] - inversions[k] + 1 > 1:
                continue
            if _preposition_between(qa, pos_a[x], pos_a[y]) != _preposition_between(
                qb, pos_b[y], pos_b[x]
            ):
                continue
            for v in shared[i + 1 : k]:
                if pos_b[y] < pos_b[v] < pos_b[x]:
                    return x, v, y
    return None


_PIVOT_MAX_WORDS = 100
"""Role swaps around a pivot are looked for in texts of up to this many shared content words."""


def _preposition_between(q: _Analysis, first: int, last: int) -> bool:
    start, end = q.content_pos[first], q.content_pos[last]
    return any(word in _PREPOSITIONS for word in q.words[start:end])


def _task(qa: _Analysis, qb: _Analysis) -> str | None:
    if qa.tasks and qb.tasks and not (qa.tasks & qb.tasks):
        return f"different tasks: {sorted(qa.tasks)} vs {sorted(qb.tasks)}"
    if qa.qtypes and qb.qtypes and not (qa.qtypes & qb.qtypes):
        return f"different question types: {sorted(qa.qtypes)} vs {sorted(qb.qtypes)}"
    return None


def clear_caches() -> None:
    """Forget the memoised per-text analyses (for benchmarks that measure cold latency)."""
    _analyse_default.cache_clear()
    _stem.cache_clear()
