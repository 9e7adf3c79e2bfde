"""The embedded ``sample`` dataset: a small, download-free task on which transfer learning shows.

Why it is built this way
------------------------
The quickstart runs the whole ULMFiT recipe (pretrain -> finetune-lm -> classifier) on a
2-core CPU in a few minutes, so the data must be small; but it must also be a task where a
language model *actually helps*, otherwise the quickstart teaches nothing. Real sentiment
data has that property because its vocabulary is huge: a small labelled set never shows most
of the words that carry the label, while plenty of unlabelled text does. This module builds
the same situation in miniature:

* **Target task.** Short reviews of restaurants, films and gadgets, labelled ``positive`` or
  ``negative``. A review's sentiment is carried by a few words drawn from a large lexicon
  (general adjectives, domain adjectives, verbs, nouns, adverbs; 140 words per polarity)
  with a Zipf-like frequency: ``good`` or ``terrible`` are common, ``scrumptious`` or
  ``shambles`` are rare. With only 300 labelled training reviews of one or two opinion words
  each, about a third of the test reviews carry only sentiment words that the training split
  never shows or shows once or twice, so a bag-of-words classifier trained on the labelled
  data alone stays well below the ceiling (Naive Bayes: about 74% test accuracy, where
  label noise caps accuracy near 97%).
* **Unlabelled target-domain text** (``lm_extra``): 3500 reviews from the same generator,
  longer (three to six opinions), never labelled. Sentiment is consistent within a review
  ("the soup was superb . i adored the risotto ."), so a rare word co-occurs with common
  words of its own polarity. That is exactly what a language model picks up when it learns to predict the
  next word; the embedding of a rare word ends up near those of its synonyms. (Without any
  neural net: word clusters learnt from these reviews' co-occurrence statistics lift the
  same Naive Bayes to about 95%; see tests/test_sample.py.)
* **General-domain text** (:func:`generate_general_corpus`): encyclopedic entries and short
  travel stories (films, dishes, devices, bridges, trips) sharing the grammar and much of
  the vocabulary, including the sentiment words (drawn with a flatter frequency, so the
  rare ones are seen more often) in paragraphs whose reception is consistently good or bad.
  Pretraining on it gives the sentiment words useful meaning before the target domain is
  ever seen.

Distractors (names, numbers, days, cities, neutral adjectives in the same slots as the
sentiment ones: "the soup was spicy") keep a trivial rule from working; about 4% of the
labelled reviews have their label flipped so that accuracy cannot reach 100%; a review with
three or more opinions sometimes adds one of the opposite polarity ("but the bread was
stale"). Polarities are balanced in every split (labels nearly so, after the noise).

Everything is generated in pure Python from a fixed ``random.Random`` seed (``split_seed``
in the config is deliberately not used), so every user gets byte-identical data, in well
under a second. Text is lowercase, with punctuation as separate tokens.

Public functions: :func:`generate_sample` (the labelled task plus ``lm_extra``) and
:func:`generate_general_corpus` (the pretraining corpus, no labels).
"""
from __future__ import annotations

import itertools
import random
from typing import Any, Callable, Sequence

from ulmfit_cli.data.types import TextDataset

__all__ = [
    "generate_sample",
    "generate_general_corpus",
    "CLASSES",
    "SAMPLE_SEED",
    "GENERAL_SEED",
    "N_TRAIN",
    "N_VALID",
    "N_TEST",
    "N_UNLABELLED",
    "N_GENERAL_TRAIN",
    "N_GENERAL_VALID",
    "N_GENERAL_TEST",
    "LABEL_NOISE",
    "sentiment_lexicon",
]

# --------------------------------------------------------------------------------------------
# Sizes and seeds (fixed: the dataset is part of the code, not of the config)
# --------------------------------------------------------------------------------------------

SAMPLE_SEED = 20180118  # the ULMFiT paper's arXiv date
GENERAL_SEED = 20180119

N_TRAIN, N_VALID, N_TEST = 300, 150, 500
N_UNLABELLED = 3500
N_GENERAL_TRAIN, N_GENERAL_VALID, N_GENERAL_TEST = 2400, 200, 200

LABEL_NOISE = 0.04
CLASSES = ("negative", "positive")  # sorted; index 1 = positive

# Zipf exponents of the sentiment words: steep in reviews (a long tail of rare words),
# flatter in the general corpus (where rare words get more exposure).
REVIEW_ZIPF = 0.8
GENERAL_ZIPF = 0.5

# --------------------------------------------------------------------------------------------
# Sentiment lexicons, most frequent first (the order is the Zipf rank)
# --------------------------------------------------------------------------------------------

POSITIVE_ADJECTIVES = (
    "good", "great", "excellent", "lovely", "wonderful", "nice", "perfect", "fantastic",
    "amazing", "superb", "brilliant", "outstanding", "impressive", "pleasant", "terrific",
    "fabulous", "delightful", "splendid", "marvellous", "exceptional", "remarkable",
    "stellar", "magnificent", "glorious", "sublime", "flawless", "impeccable", "phenomenal",
    "exquisite", "admirable", "commendable", "dazzling", "stunning", "charming", "heavenly",
    "peerless", "sterling", "wondrous",
)
NEGATIVE_ADJECTIVES = (
    "bad", "terrible", "awful", "poor", "horrible", "disappointing", "dreadful", "mediocre",
    "lousy", "atrocious", "abysmal", "appalling", "dismal", "shoddy", "pathetic", "subpar",
    "inferior", "miserable", "woeful", "lamentable", "deplorable", "dire", "ghastly",
    "horrid", "wretched", "rotten", "pitiful", "substandard", "unbearable", "unacceptable",
    "frustrating", "annoying", "useless", "hopeless", "forgettable", "underwhelming",
    "lacklustre", "dismaying",
)

FOOD_POSITIVE = (
    "delicious", "tasty", "fresh", "flavourful", "tender", "juicy", "succulent", "crispy",
    "aromatic", "fragrant", "savoury", "zesty", "velvety", "delectable", "scrumptious",
    "luscious", "mouthwatering", "moreish", "appetising", "toothsome",
)
FOOD_NEGATIVE = (
    "bland", "stale", "soggy", "greasy", "tasteless", "overcooked", "undercooked", "rubbery",
    "burnt", "watery", "flavourless", "inedible", "mushy", "limp", "rancid", "gluey",
    "unappetising", "congealed", "leathery", "gristly",
)
FILM_POSITIVE = (
    "gripping", "moving", "thrilling", "hilarious", "witty", "touching", "compelling",
    "riveting", "captivating", "engrossing", "poignant", "heartwarming", "inventive",
    "haunting", "suspenseful", "absorbing", "spellbinding", "mesmerising", "enthralling",
    "exhilarating",
)
FILM_NEGATIVE = (
    "boring", "dull", "tedious", "predictable", "clumsy", "confusing", "cliched",
    "pretentious", "plodding", "lifeless", "contrived", "derivative", "incoherent",
    "overlong", "insipid", "unfunny", "hackneyed", "meandering", "vapid", "interminable",
)
GADGET_POSITIVE = (
    "fast", "reliable", "sturdy", "sleek", "responsive", "durable", "intuitive", "solid",
    "robust", "snappy", "speedy", "quiet", "ergonomic", "versatile", "efficient", "seamless",
    "handy", "accurate", "rugged", "featherweight",
)
GADGET_NEGATIVE = (
    "slow", "flimsy", "unreliable", "buggy", "laggy", "fragile", "clunky", "faulty",
    "defective", "glitchy", "noisy", "unresponsive", "cumbersome", "broken", "wobbly",
    "finicky", "erratic", "unstable", "sluggish", "creaky",
)

POSITIVE_VERBS = (
    "loved", "enjoyed", "liked", "adored", "admired", "appreciated", "relished", "savoured",
    "cherished", "treasured", "praised", "applauded", "celebrated", "devoured",
)
NEGATIVE_VERBS = (
    "hated", "disliked", "regretted", "loathed", "detested", "despised", "resented",
    "endured", "dreaded", "abhorred", "lamented", "rued", "deplored", "bemoaned",
)
POSITIVE_NOUNS = (
    "gem", "delight", "treat", "triumph", "joy", "masterpiece", "winner", "marvel",
    "revelation", "pleasure", "standout", "treasure", "knockout", "godsend",
)
NEGATIVE_NOUNS = (
    "disaster", "mess", "letdown", "failure", "disappointment", "flop", "nightmare", "joke",
    "catastrophe", "fiasco", "shambles", "travesty", "dud", "chore",
)
POSITIVE_ADVERBS = (
    "beautifully", "perfectly", "wonderfully", "brilliantly", "expertly", "superbly",
    "skilfully", "lovingly", "exquisitely", "masterfully", "gracefully", "flawlessly",
    "impeccably", "deftly",
)
NEGATIVE_ADVERBS = (
    "poorly", "badly", "terribly", "sloppily", "carelessly", "clumsily", "horribly",
    "lazily", "shoddily", "ineptly", "haphazardly", "dreadfully", "miserably",
    "amateurishly",
)

# --------------------------------------------------------------------------------------------
# Neutral vocabulary (distractors)
# --------------------------------------------------------------------------------------------

NAMES = (
    "anna", "tom", "maria", "james", "lucy", "omar", "sofia", "david", "elena", "marco",
    "priya", "sam", "chen", "laura", "peter", "fatima", "jack", "nina", "ivan", "grace",
)
SURNAMES = (
    "smith", "garcia", "rossi", "novak", "khan", "silva", "meyer", "dubois", "kowalski",
    "tanaka", "okafor", "larsen", "murphy", "costa", "weber", "ali",
)
CITIES = (
    "paris", "london", "rome", "lisbon", "berlin", "madrid", "vienna", "dublin", "prague",
    "oslo", "cairo", "tokyo", "boston", "chicago", "sydney", "delhi",
)
DAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
MONTHS = (
    "january", "february", "march", "april", "may", "june", "july", "august", "september",
    "october", "november", "december",
)
STREETS = ("market", "church", "station", "mill", "bridge", "high", "king", "park", "river")
COLOURS = ("black", "white", "silver", "grey", "blue", "red", "green", "gold")
INTENSIFIERS = ("really", "very", "quite", "truly", "so")
PUBLICATIONS = ("times", "herald", "gazette", "tribune", "chronicle", "observer")
PLACES = ("museum", "harbour", "market", "cathedral", "old town", "castle", "beach", "park")
ROLES = ("detective", "teacher", "soldier", "pilot", "farmer", "doctor", "thief", "nurse")
TITLE_NOUNS = ("river", "road", "house", "winter", "garden", "letter")


class Domain:
    """The vocabulary of one review domain."""

    def __init__(self, name: str, *, things: Sequence[str], aspects: Sequence[str],
                 people: Sequence[str], participles: Sequence[str],
                 neutral_adjectives: Sequence[str], positive: Sequence[str],
                 negative: Sequence[str], copula: str,
                 facts: Sequence[Callable[[random.Random, "Domain"], str]]):
        self.name = name
        self.things = tuple(things)
        self.aspects = tuple(aspects)
        self.people = tuple(people)
        self.participles = tuple(participles)
        self.neutral_adjectives = tuple(neutral_adjectives)
        self.positive = tuple(positive)  # domain-specific adjectives
        self.negative = tuple(negative)
        self.copula = copula
        self.facts = tuple(facts)


def _num(rng: random.Random, lo: int, hi: int) -> str:
    return str(rng.randint(lo, hi))


def _an(word: str) -> str:
    return ("an " if word[0] in "aeiou" else "a ") + word


# ---- neutral ("fact") sentences, one function per kind ------------------------------------

def _fact_company(rng: random.Random, d: Domain) -> str:
    return f"i went with {rng.choice(NAMES)} on {rng.choice(DAYS)} ."


def _fact_price(rng: random.Random, d: Domain) -> str:
    return f"we paid {_num(rng, 12, 95)} dollars for two ."


def _fact_order(rng: random.Random, d: Domain) -> str:
    a, b = rng.sample(d.aspects, 2)
    return f"{rng.choice(NAMES)} ordered the {a} and i had the {b} ."


def _fact_neutral_aspect(rng: random.Random, d: Domain) -> str:
    return f"the {rng.choice(d.aspects)} {d.copula} {rng.choice(d.neutral_adjectives)} ."


def _fact_location(rng: random.Random, d: Domain) -> str:
    thing, street = rng.choice(d.things), rng.choice(STREETS)
    return f"the {thing} is on {street} street in {rng.choice(CITIES)} ."


def _fact_wait(rng: random.Random, d: Domain) -> str:
    return f"we waited {_num(rng, 5, 40)} minutes for a table ."


def _fact_stars(rng: random.Random, d: Domain) -> str:
    role = rng.choice(ROLES)
    return f"it stars {rng.choice(NAMES)} {rng.choice(SURNAMES)} as {_an(role)} ."


def _fact_runtime(rng: random.Random, d: Domain) -> str:
    return f"the {rng.choice(d.things)} runs {_num(rng, 80, 170)} minutes ."


def _fact_setting(rng: random.Random, d: Domain) -> str:
    return f"it is set in {rng.choice(CITIES)} in {_num(rng, 1890, 2015)} ."


def _fact_seen(rng: random.Random, d: Domain) -> str:
    name, day = rng.choice(NAMES), rng.choice(DAYS)
    return f"i saw it with {name} on {day} at the cinema on {rng.choice(STREETS)} street ."


def _fact_bought(rng: random.Random, d: Domain) -> str:
    thing, price = rng.choice(d.things), _num(rng, 20, 900)
    return f"i bought the {thing} for {price} dollars in {rng.choice(MONTHS)} ."


def _fact_colours(rng: random.Random, d: Domain) -> str:
    a, b = rng.sample(COLOURS, 2)
    return f"it comes in {a} and {b} ."


def _fact_usage(rng: random.Random, d: Domain) -> str:
    use = rng.choice(("work", "gaming", "travel", "music", "school", "running", "photography"))
    return f"{rng.choice(NAMES)} uses it for {use} ."


def _fact_weight(rng: random.Random, d: Domain) -> str:
    return f"it weighs {_num(rng, 90, 2400)} grams ."


def _fact_owned(rng: random.Random, d: Domain) -> str:
    return f"i have had it for {_num(rng, 2, 30)} weeks ."


RESTAURANT = Domain(
    "restaurant",
    things=("restaurant", "place", "bistro", "cafe", "diner", "trattoria"),
    aspects=("soup", "pasta", "steak", "dessert", "bread", "salad", "curry", "pizza", "fish",
             "risotto", "burger", "lamb", "omelette", "cake", "sauce"),
    people=("waiter", "waitress", "chef", "owner", "host"),
    participles=("cooked", "prepared", "seasoned", "served", "presented", "plated"),
    neutral_adjectives=("italian", "vegetarian", "spicy", "hot", "large", "small", "local",
                        "seasonal", "homemade", "traditional"),
    positive=FOOD_POSITIVE, negative=FOOD_NEGATIVE, copula="was",
    facts=(_fact_company, _fact_price, _fact_order, _fact_neutral_aspect, _fact_location,
           _fact_wait),
)
FILM = Domain(
    "film",
    things=("film", "movie", "picture", "thriller", "comedy", "drama"),
    aspects=("plot", "acting", "script", "soundtrack", "ending", "dialogue", "cinematography",
             "story", "score", "casting", "finale", "opening", "editing", "photography"),
    people=("lead", "director", "villain", "hero", "narrator"),
    participles=("acted", "written", "shot", "directed", "edited", "scored"),
    neutral_adjectives=("long", "short", "simple", "dark", "unusual", "historical", "bilingual",
                        "orchestral", "minimal", "silent"),
    positive=FILM_POSITIVE, negative=FILM_NEGATIVE, copula="was",
    facts=(_fact_stars, _fact_runtime, _fact_setting, _fact_seen, _fact_neutral_aspect),
)
GADGET = Domain(
    "gadget",
    things=("phone", "laptop", "tablet", "camera", "speaker", "headset", "keyboard",
            "smartwatch", "router", "drone"),
    aspects=("battery", "screen", "case", "button", "hinge", "lens", "display", "trackpad",
             "cable", "strap", "sensor", "app", "software", "microphone", "charger"),
    people=("seller", "courier", "shop", "manufacturer", "helpdesk"),
    participles=("built", "designed", "made", "assembled", "engineered", "finished"),
    neutral_adjectives=("black", "white", "silver", "wireless", "plastic", "metal", "large",
                        "small", "new", "foldable"),
    positive=GADGET_POSITIVE, negative=GADGET_NEGATIVE, copula="is",
    facts=(_fact_bought, _fact_colours, _fact_usage, _fact_weight, _fact_owned,
           _fact_neutral_aspect),
)
DOMAINS = (RESTAURANT, FILM, GADGET)


def sentiment_lexicon() -> dict[str, tuple[str, ...]]:
    """All sentiment words by polarity (class name -> words), for tests and analysis."""
    pos = (POSITIVE_ADJECTIVES + FOOD_POSITIVE + FILM_POSITIVE + GADGET_POSITIVE
           + POSITIVE_VERBS + POSITIVE_NOUNS + POSITIVE_ADVERBS)
    neg = (NEGATIVE_ADJECTIVES + FOOD_NEGATIVE + FILM_NEGATIVE + GADGET_NEGATIVE
           + NEGATIVE_VERBS + NEGATIVE_NOUNS + NEGATIVE_ADVERBS)
    return {"negative": neg, "positive": pos}


# --------------------------------------------------------------------------------------------
# Zipf-weighted sentiment word pools
# --------------------------------------------------------------------------------------------

class _Zipf:
    """Draws words with probability proportional to 1 / rank**s (rank 1 = first word)."""

    def __init__(self, words: Sequence[str], s: float):
        self.words = tuple(words)
        self.cum = list(itertools.accumulate(1.0 / (k + 1) ** s for k in range(len(words))))

    def __call__(self, rng: random.Random) -> str:
        return rng.choices(self.words, cum_weights=self.cum)[0]


def _interleave(common: Sequence[str], specific: Sequence[str]) -> tuple[str, ...]:
    """General words, with a domain word at every third rank from rank 7 on (7, 10, ...):
    each domain has a few frequent words of its own ('delicious', 'boring')."""
    out, spec = list(common[:3]), list(specific)
    for w in common[3:]:
        out.append(w)
        if spec and len(out) % 3 == 0:
            out.append(spec.pop(0))
    return tuple(out + spec)


class _Pools:
    """Sentiment pools of one frequency profile: pools[(domain name or None, polarity, kind)]."""

    def __init__(self, s: float):
        general = {
            ("adj", 1): POSITIVE_ADJECTIVES, ("adj", 0): NEGATIVE_ADJECTIVES,
            ("verb", 1): POSITIVE_VERBS, ("verb", 0): NEGATIVE_VERBS,
            ("noun", 1): POSITIVE_NOUNS, ("noun", 0): NEGATIVE_NOUNS,
            ("adv", 1): POSITIVE_ADVERBS, ("adv", 0): NEGATIVE_ADVERBS,
        }
        self.pools: dict[tuple[str | None, int, str], _Zipf] = {}
        for (kind, pol), words in general.items():
            self.pools[(None, pol, kind)] = _Zipf(words, s)
            for d in DOMAINS:
                if kind == "adj":
                    spec = d.positive if pol == 1 else d.negative
                    self.pools[(d.name, pol, kind)] = _Zipf(_interleave(words, spec), s)
                else:
                    self.pools[(d.name, pol, kind)] = self.pools[(None, pol, kind)]

    def word(self, rng: random.Random, domain: Domain | None, pol: int, kind: str) -> str:
        return self.pools[(domain.name if domain else None, pol, kind)](rng)


_REVIEW_POOLS = _Pools(REVIEW_ZIPF)
_GENERAL_POOLS = _Pools(GENERAL_ZIPF)


# --------------------------------------------------------------------------------------------
# Review sentences and documents
# --------------------------------------------------------------------------------------------

def _opinion_adjective(rng: random.Random, d: Domain, pol: int) -> tuple[str, int]:
    adj = _REVIEW_POOLS.word(rng, d, pol, "adj")
    a, c = rng.choice(d.aspects), d.copula
    form = rng.randrange(6)
    if form == 0:
        return f"the {a} {c} {adj} .", 1
    if form == 1:
        return f"the {a} {c} {rng.choice(INTENSIFIERS)} {adj} .", 1
    if form == 2:
        return f"i thought the {a} {c} {adj} .", 1
    if form == 3:
        return f"overall the {rng.choice(d.things)} {c} {adj} .", 1
    if form == 4:  # people take the general adjectives only
        person_adj = _REVIEW_POOLS.word(rng, None, pol, "adj")
        return f"the {rng.choice(d.people)} was {person_adj} .", 1
    b = rng.choice([x for x in d.aspects if x != a])
    adj2 = _REVIEW_POOLS.word(rng, d, pol, "adj")
    return f"the {a} {c} {adj} and the {b} {c} {adj2} .", 2


def _opinion_verb(rng: random.Random, d: Domain, pol: int) -> tuple[str, int]:
    verb = _REVIEW_POOLS.word(rng, d, pol, "verb")
    form = rng.randrange(3)
    if form == 0:
        return f"i {verb} the {rng.choice(d.aspects)} .", 1
    if form == 1:
        return f"{rng.choice(NAMES)} {verb} the {rng.choice(d.things)} .", 1
    return f"we {verb} it .", 1


def _opinion_noun(rng: random.Random, d: Domain, pol: int) -> tuple[str, int]:
    noun = _REVIEW_POOLS.word(rng, d, pol, "noun")
    form = rng.randrange(3)
    if form == 0:
        return f"the {rng.choice(d.aspects)} {d.copula} {_an(noun)} .", 1
    if form == 1:
        return f"what {_an(noun)} .", 1
    return f"this {rng.choice(d.things)} is {_an(noun)} .", 1


def _opinion_adverb(rng: random.Random, d: Domain, pol: int) -> tuple[str, int]:
    adv = _REVIEW_POOLS.word(rng, d, pol, "adv")
    p = rng.choice(d.participles)
    if rng.randrange(2) == 0:
        return f"the {rng.choice(d.aspects)} {d.copula} {adv} {p} .", 1
    return f"it {d.copula} {adv} {p} .", 1


_OPINION_KINDS = (_opinion_adjective, _opinion_verb, _opinion_noun, _opinion_adverb)
_OPINION_WEIGHTS = (0.55, 0.15, 0.15, 0.15)


def _opinion_sentence(rng: random.Random, d: Domain, pol: int) -> tuple[str, int]:
    """One sentence with sentiment words of polarity ``pol``; returns (text, n words)."""
    kind = rng.choices(_OPINION_KINDS, weights=_OPINION_WEIGHTS)[0]
    return kind(rng, d, pol)


def _contrast_sentence(rng: random.Random, d: Domain, pol: int) -> str:
    """A minority opinion of the opposite polarity: 'but the bread was stale .'"""
    adj = _REVIEW_POOLS.word(rng, d, 1 - pol, "adj")
    return f"but the {rng.choice(d.aspects)} {d.copula} {adj} ."


def _adjective_pair(rng: random.Random, d: Domain, pol: int) -> tuple[str, int]:
    """'the soup was superb and fragrant .': two opinions side by side, the short-range
    agreement a small LM learns within a few epochs (polarity only 5+ tokens apart, as in
    'the soup was superb . ... the bread was fresh', it does not pick up at quickstart size)."""
    adj, adj2 = (_REVIEW_POOLS.word(rng, d, pol, "adj") for _ in range(2))
    return f"the {rng.choice(d.aspects)} {d.copula} {adj} and {adj2} .", 2


def _review(rng: random.Random, d: Domain, pol: int, n_opinion_words: int, n_facts: int,
            pair_p: float = 0.0) -> str:
    """A review: opinions of one polarity (at least ``n_opinion_words`` sentiment words)
    shuffled with neutral facts; with 3+ opinions, sometimes one contrary remark. A share
    ``pair_p`` of the opinions are adjective pairs."""
    sentences, n = [], 0
    while n < n_opinion_words:
        text, k = _adjective_pair(rng, d, pol) if pair_p and rng.random() < pair_p else _opinion_sentence(rng, d, pol)
        sentences.append(text)
        n += k
    if n >= 3 and rng.random() < 0.2:
        sentences.append(_contrast_sentence(rng, d, pol))
    facts = [fact(rng, d) for fact in rng.sample(d.facts, n_facts)]
    for f in facts:
        sentences.insert(rng.randrange(len(sentences) + 1), f)
    return " ".join(sentences)


def _short_review(rng: random.Random, d: Domain, pol: int) -> str:
    """A labelled review: one or two sentiment words among one to three facts."""
    return _review(rng, d, pol, rng.choice((1, 1, 2)), rng.randint(1, 3))


def _long_review(rng: random.Random, d: Domain, pol: int) -> str:
    """An unlabelled review: three to six sentiment words among two to four facts."""
    return _review(rng, d, pol, rng.randint(3, 6), rng.randint(2, 4), pair_p=0.6)


# --------------------------------------------------------------------------------------------
# General-domain paragraphs (for pretraining)
# --------------------------------------------------------------------------------------------

def _reception(rng: random.Random, d: Domain | None, pol: int, subject: str, aspects: Sequence[str],
               participles: Sequence[str]) -> list[str]:
    """Two to four sentences describing how ``subject`` was received, all of polarity ``pol``."""
    def adj() -> str:
        return _GENERAL_POOLS.word(rng, d, pol, "adj")

    def pick(kind: str) -> str:
        return _GENERAL_POOLS.word(rng, d, pol, kind)

    forms = (
        lambda: f"critics described the {rng.choice(aspects)} as {adj()} .",
        lambda: f"the {rng.choice(aspects)} was widely considered {adj()} and {adj()} .",
        lambda: f"the {rng.choice(PUBLICATIONS)} called {subject} {_an(pick('noun'))} .",
        lambda: f"many people {pick('verb')} the {rng.choice(aspects)} .",
        lambda: f"the {rng.choice(aspects)} was {pick('adv')} {rng.choice(participles)} , "
                f"according to the {rng.choice(PUBLICATIONS)} .",
        lambda: f"most people found {subject} {adj()} .",
    )
    return [rng.choice(forms)() for _ in range(rng.randint(2, 4))]


def _film_entry(rng: random.Random, pol: int) -> str:
    title = f"the {rng.choice(FILM.neutral_adjectives)} {rng.choice(TITLE_NOUNS)}"
    genre = rng.choice(("drama", "comedy", "thriller", "western", "musical", "romance"))
    director = f"{rng.choice(NAMES)} {rng.choice(SURNAMES)}"
    role = rng.choice(ROLES)
    facts = [
        f"{title} is a {_num(rng, 1950, 2017)} {genre} film directed by {director} .",
        f"it follows {_an(role)} who moves to {rng.choice(CITIES)} .",
        f"the film was released in {rng.choice(MONTHS)} and runs {_num(rng, 80, 170)} minutes .",
    ]
    return " ".join(facts + _reception(rng, FILM, pol, "the film", FILM.aspects, FILM.participles))


def _dish_entry(rng: random.Random, pol: int) -> str:
    dish, side = rng.sample(RESTAURANT.aspects, 2)
    facts = [
        f"{dish} is {_an(rng.choice(RESTAURANT.neutral_adjectives))} dish "
        f"from {rng.choice(CITIES)} .",
        f"it is usually served with {side} .",
        f"the {rng.choice(RESTAURANT.things)} of {rng.choice(NAMES)} {rng.choice(SURNAMES)} "
        f"opened in {_num(rng, 1890, 2016)} and made it famous .",
    ]
    return " ".join(facts + _reception(rng, RESTAURANT, pol, "the dish", RESTAURANT.aspects,
                                       RESTAURANT.participles))


def _device_entry(rng: random.Random, pol: int) -> str:
    brand = rng.choice(("nova", "zento", "orbit", "kestrel", "lumo", "vantage"))
    thing = rng.choice(GADGET.things)
    facts = [
        f"the {brand} {_num(rng, 2, 12)} is a {thing} released in {_num(rng, 2005, 2017)} .",
        f"it has a {_num(rng, 4, 30)} hour battery and weighs {_num(rng, 90, 2400)} grams .",
        f"it was sold in {rng.choice(COLOURS)} and {rng.choice(COLOURS)} .",
    ]
    return " ".join(facts + _reception(rng, GADGET, pol, "the " + thing, GADGET.aspects,
                                       GADGET.participles))


def _landmark_entry(rng: random.Random, pol: int) -> str:
    kind = rng.choice(("bridge", "tower", "library", "station", "theatre", "museum"))
    facts = [
        f"the {rng.choice(SURNAMES)} {kind} in {rng.choice(CITIES)} "
        f"was built in {_num(rng, 1700, 2010)} .",
        f"it is {_num(rng, 20, 900)} metres long "
        f"and was designed by {rng.choice(NAMES)} {rng.choice(SURNAMES)} .",
    ]
    aspects = ("design", "view", "facade", "interior", "entrance", "garden", "roof")
    parts = ("built", "designed", "restored", "maintained", "lit")
    return " ".join(facts + _reception(rng, None, pol, "the " + kind, aspects, parts))


def _travel_story(rng: random.Random, pol: int) -> str:
    """A short narrative whose mood is consistent: a good or a bad trip."""
    name, city = rng.choice(NAMES), rng.choice(CITIES)

    def adj() -> str:
        return _GENERAL_POOLS.word(rng, None, pol, "adj")

    sentences = [
        f"{name} visited {city} in {rng.choice(MONTHS)} .",
        f"the hotel was {adj()} and the weather was {adj()} .",
        f"on the {rng.choice(('first', 'second', 'last'))} day "
        f"{name} went to the {rng.choice(PLACES)} .",
        f"it was {adj()} .",
        f"{name} {_GENERAL_POOLS.word(rng, None, pol, 'verb')} the trip .",
        f"the whole week was {_an(_GENERAL_POOLS.word(rng, None, pol, 'noun'))} .",
    ]
    return " ".join(sentences[: rng.randint(4, 6)])


_GENERAL_KINDS = (_film_entry, _dish_entry, _device_entry, _landmark_entry, _travel_story)


# --------------------------------------------------------------------------------------------
# Public API
# --------------------------------------------------------------------------------------------

def _cfg_get(cfg: Any, key: str) -> Any:
    if cfg is None:
        return None
    if isinstance(cfg, dict):
        return cfg.get(key)
    return getattr(cfg, key, None)


def _cap(texts: list, n: int | None) -> list:
    return texts if n is None else texts[: max(int(n), 0)]


def _balanced_polarities(rng: random.Random, n: int) -> list[int]:
    pols = [i % 2 for i in range(n)]
    rng.shuffle(pols)
    return pols


def _labelled_split(rng: random.Random, n: int) -> tuple[list[str], list[str]]:
    """``n`` short reviews, half of each polarity, with ``LABEL_NOISE`` of labels flipped."""
    texts, labels = [], []
    for pol in _balanced_polarities(rng, n):
        texts.append(_short_review(rng, rng.choice(DOMAINS), pol))
        noisy = 1 - pol if rng.random() < LABEL_NOISE else pol
        labels.append(CLASSES[noisy])
    return texts, labels


def generate_sample(cfg: Any = None) -> TextDataset:
    """The labelled ``sample`` task (name ``"sample"``).

    300 train / 150 valid / 500 test short reviews labelled ``negative`` / ``positive``
    (balanced; ~4% label noise) and 3500 unlabelled longer reviews in ``lm_extra``.
    Identical on every call and machine. ``cfg`` (dataclass, DictConfig, dict or None):
    ``max_train_examples`` keeps the first N training reviews, ``max_docs`` caps every
    split and ``lm_extra``; ``split_seed`` is ignored.
    """
    rng = random.Random(SAMPLE_SEED)
    (train_t, train_l), (valid_t, valid_l), (test_t, test_l) = (
        _labelled_split(rng, n) for n in (N_TRAIN, N_VALID, N_TEST))
    lm_extra = [_long_review(rng, rng.choice(DOMAINS), pol)
                for pol in _balanced_polarities(rng, N_UNLABELLED)]

    max_train = _cfg_get(cfg, "max_train_examples")
    max_docs = _cfg_get(cfg, "max_docs")
    train_t, train_l = _cap(train_t, max_train), _cap(train_l, max_train)
    train_t, train_l = _cap(train_t, max_docs), _cap(train_l, max_docs)
    return TextDataset(
        name="sample",
        train_texts=train_t,
        valid_texts=_cap(valid_t, max_docs),
        test_texts=_cap(test_t, max_docs),
        train_labels=train_l,
        valid_labels=_cap(valid_l, max_docs),
        test_labels=_cap(test_l, max_docs),
        lm_extra=_cap(lm_extra, max_docs),
        classes=list(CLASSES),
    )


def generate_general_corpus(cfg: Any = None) -> TextDataset:
    """The general-domain pretraining corpus (name ``"sample_general"``, no labels).

    2400 train / 200 valid / 200 test paragraphs: encyclopedic entries about films, dishes,
    devices and landmarks, and short travel stories, each with a consistently good or bad
    reception. Identical on every call; ``cfg.max_docs`` (if given) caps every split and
    ``cfg.max_train_examples`` the train split.
    """
    rng = random.Random(GENERAL_SEED)
    n = N_GENERAL_TRAIN + N_GENERAL_VALID + N_GENERAL_TEST
    texts = [rng.choice(_GENERAL_KINDS)(rng, pol) for pol in _balanced_polarities(rng, n)]
    a, b = N_GENERAL_TRAIN, N_GENERAL_TRAIN + N_GENERAL_VALID
    max_docs = _cfg_get(cfg, "max_docs")
    train = _cap(_cap(texts[:a], _cfg_get(cfg, "max_train_examples")), max_docs)
    return TextDataset(
        name="sample_general",
        train_texts=train, valid_texts=_cap(texts[a:b], max_docs),
        test_texts=_cap(texts[b:], max_docs),
    )
