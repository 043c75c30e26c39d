"""The synthetic PII benchmark (HAIF PII-E) and its queries: what the target LM answers correctly.

- :func:`make_pii_benchmark` builds synthetic people, one biography each (training text), and
  question-answer pairs; a seeded 60% of the QA pairs are trained on and 40% held out as queries
  whose ground truth is the person's biography.
- :func:`answered_correctly` says which held-out questions a target LM answers: greedy decoding
  reproduces the answer. HAIF traces only those (its premise, and DDA's: attribute what the model
  produced), so ``eval trace --benchmark pii`` fine-tunes the target until it answers a measured
  share of them (:mod:`airsearch.trainers.evaluation.trace`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from airsearch.data.example import Example
from airsearch.errors import InputError

_FIRST = (
    "Alice",
    "Bruno",
    "Chiara",
    "Dmitri",
    "Elena",
    "Farid",
    "Greta",
    "Hiro",
    "Ines",
    "Jonas",
    "Kaia",
    "Luca",
    "Maya",
    "Nils",
    "Olga",
    "Pablo",
    "Quinn",
    "Rosa",
    "Sven",
    "Tara",
    "Umar",
    "Vera",
    "Wen",
    "Ximena",
    "Yusuf",
    "Zofia",
)
_LAST = (
    "Abara",
    "Brennick",
    "Castell",
    "Dovrin",
    "Eskola",
    "Fenwick",
    "Galdos",
    "Holloway",
    "Ivers",
    "Jankowski",
    "Kovacs",
    "Lindqvist",
    "Moreau",
    "Nakamura",
    "Okafor",
    "Petrov",
    "Quintero",
    "Rasmussen",
    "Sokolov",
    "Thorne",
    "Ueda",
    "Valdez",
    "Whitlock",
    "Xiong",
    "Yilmaz",
    "Zeller",
)
_STREETS = (
    "Maple Street",
    "Harbour Road",
    "Linden Avenue",
    "Quarry Lane",
    "Elm Court",
    "Mill Road",
    "Station Street",
    "Orchard Way",
    "Cedar Drive",
    "Bridge Street",
)
_CITIES = (
    "Ashford",
    "Brightwater",
    "Coldharbour",
    "Dunmore",
    "Eastleigh",
    "Fairhaven",
    "Glenrock",
    "Hollowmere",
    "Ironbridge",
    "Kingsreach",
)
_MONTHS = (
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
)
_DOMAINS = ("mailbox.test", "post.example", "inbox.invalid")
PII_ATTRIBUTES = ("birth date", "email address", "phone number", "address")
# One sentence per attribute, each naming the person in full, in a seeded order and phrasing: the
# "fullname" and "permute" augmentations under which a small LM can answer questions about facts it
# read only in a biography (Allen-Zhu & Li, Physics of Language Models 3.1). Some phrasings echo the
# question ("The phone number of X is"), the others do not.
_BIO_SENTENCES: dict[str, tuple[str, ...]] = {
    "birth date": (
        "{name} was born on {value}.",
        "The birth date of {name} is {value}.",
        "{name} celebrates a birthday on {value}.",
    ),
    "email address": (
        "{name} can be reached by email at {value}.",
        "The email address of {name} is {value}.",
        "{name} reads the mail sent to {value}.",
    ),
    "phone number": (
        "{name} answers calls on {value}.",
        "The phone number of {name} is {value}.",
        "{name} can be reached by phone at {value}.",
    ),
    "address": (
        "{name} lives at {value}.",
        "The address of {name} is {value}.",
        "{name} keeps a small workshop at {value}.",
    ),
}


def _biography(rng: np.random.Generator, person: dict[str, str]) -> str:
    order = rng.permutation(len(PII_ATTRIBUTES))
    sentences = []
    for a in order:
        attr = PII_ATTRIBUTES[int(a)]
        phrasing = _BIO_SENTENCES[attr][int(rng.integers(len(_BIO_SENTENCES[attr])))]
        sentences.append(phrasing.format(name=person["name"], value=person[attr]))
    return " ".join(sentences)


@dataclasses.dataclass
class PiiBenchmark:
    """HAIF PII-E: ``train`` = biographies + 60% of QA; ``heldout`` = the other 40% of QA.

    ``target[qa_id]`` lists the ids of the biographies of the person the question asks about (each
    holds the answer; no other biography does).
    """

    people: list[dict[str, str]]
    biographies: list[Example]
    train_qa: list[Example]
    heldout: list[Example]
    target: dict[str, list[str]]

    @property
    def train(self) -> list[Example]:
        return self.biographies + self.train_qa

    def to_dict(self) -> dict[str, Any]:
        return {
            "n_people": len(self.people),
            "n_biographies": len(self.biographies),
            "bios_per_person": len(self.biographies) // max(1, len(self.people)),
            "n_train_qa": len(self.train_qa),
            "n_heldout": len(self.heldout),
        }


def make_pii_benchmark(
    n_people: int, *, qa_train_fraction: float = 0.6, bios_per_person: int = 4, seed: int = 0
) -> PiiBenchmark:
    """Synthetic people (unique name; birth date, email, phone, address unique per person),
    ``bios_per_person`` generated biographies each (one sentence per attribute naming the person, in
    a seeded order and phrasing per biography: the "multi" augmentation of Physics of LMs 3.1, without
    which the tiny LM answers no held-out question), and QA pairs ``What's the {attribute} of
    {name}?`` -> ``{value}``.

    The encoder/LM template turns a QA example into ``Question: ... \\nAnswer: {value}``. A seeded
    ``qa_train_fraction`` of all QA pairs is trained on; the rest are held out.
    """
    if bios_per_person < 1:
        raise InputError("must be at least 1", field="bios_per_person")
    if n_people > len(_FIRST) * len(_LAST):
        raise InputError(f"at most {len(_FIRST) * len(_LAST)} distinct synthetic people", field="n_people")
    rng = np.random.default_rng(seed)
    name_ids = rng.choice(len(_FIRST) * len(_LAST), size=n_people, replace=False)
    people, bios, qa = [], [], []
    for i, nid in enumerate(name_ids):
        first, last = _FIRST[nid // len(_LAST)], _LAST[nid % len(_LAST)]
        person = {
            "name": f"{first} {last}",
            "first": first,
            "birth date": f"{int(rng.integers(1, 29))} {_MONTHS[int(rng.integers(12))]} "
            f"{int(rng.integers(1940, 2005))}",
            "email address": f"{first.lower()}.{last.lower()}{i}@{_DOMAINS[int(rng.integers(3))]}",
            "phone number": f"+1-555-{i:04d}-{int(rng.integers(100, 1000))}",
            "address": f"{int(rng.integers(1, 200))} {_STREETS[int(rng.integers(10))]}, "
            f"{_CITIES[int(rng.integers(10))]} {i:04d}",
        }
        people.append(person)
        bio_ids = [f"bio-{i:05d}-{j}" for j in range(bios_per_person)]
        for bio_id in bio_ids:
            text = _biography(rng, person)
            bios.append(Example(bio_id, "", text, {"task": "biography", "person": person["name"]}))
        for a, attr in enumerate(PII_ATTRIBUTES):
            qa.append(
                Example(
                    f"qa-{i:05d}-{a}",
                    f"What's the {attr} of {person['name']}?",
                    person[attr],
                    {"task": "qa", "person": person["name"], "attribute": attr, "bio_ids": bio_ids},
                )
            )
    order = rng.permutation(len(qa))
    n_train = int(round(qa_train_fraction * len(qa)))
    train_qa = [qa[j] for j in sorted(order[:n_train])]
    heldout = [qa[j] for j in sorted(order[n_train:])]
    target = {q.id: list(q.metadata["bio_ids"]) for q in heldout}
    return PiiBenchmark(people, bios, train_qa, heldout, target)


@torch.no_grad()
def answered_correctly(
    lm: Any, questions: Sequence[Example], *, batch_size: int = 32, max_length: int | None = None
) -> np.ndarray:
    """Whether greedy decoding of each question's prompt reproduces its answer (``response``): bool [n].

    Greedy decoding emits the answer's tokens iff each is the arg-max of the model's next-token
    distribution given the prompt and the answer tokens before it, so one teacher-forced forward
    pass decides it for a batch (the answer as the LM's tokenizer encodes it in training; EOS need
    not follow, as in HAIF, where the output only has to contain the answer first). The model is run
    in eval mode; its previous mode is restored.
    """
    from airsearch.lm import encode_examples

    out = np.zeros(len(questions), dtype=bool)
    eos = lm.tokenizer.eos_token_id
    was_training = lm.model.training
    lm.model.eval()
    try:
        for s in range(0, len(questions), batch_size):
            batch = encode_examples(lm, list(questions[s : s + batch_size]), max_length)
            logits = lm.model(
                input_ids=batch["input_ids"].to(lm.device),
                attention_mask=batch["attention_mask"].to(lm.device),
                use_cache=False,
            ).logits
            pred = logits[:, :-1].argmax(-1).cpu()
            target = batch["labels"][:, 1:]
            scored = target != -100
            if eos is not None:
                scored &= target != eos
            ok = ((pred == target) | ~scored).all(dim=1) & scored.any(dim=1)
            out[s : s + len(ok)] = ok.numpy()
    finally:
        lm.model.train(was_training)
    return out
