"""weak_sentiment.py: sentiment examples labelled by the AFINN-165 lexicon rather than by hand.

The 1,800 hand-labelled sentences are product and restaurant reviews; the test sentences are movie
reviews. A head fitted to the first learns their words and transfers poorly (the first edition:
78% held out, 70.5% on imdb). The lexicon knows the polarity of 3,382 words whatever the domain.
The classifier is a linear map of the mean of per-token features, so its logit margin is the mean
of per-token margins: it is a lexicon with context. These examples teach it the lexicon's words:

  words      every AFINN entry alone as a text, positive when its score is > 0
  sentences  sentences of the language model's training text (SOTU, Brown, mail train splits)
             whose AFINN score (npm sentiment's rule, negators included) is at least
             min_abs away from 0, labelled by its sign, the larger class cut to the smaller

  tokens     (token_marks) in any text the fine-tune reads (the hand-labelled sentences, the
             language-model windows): the last token of every word the lexicon scores, labelled
             by the sign of its score (negated after a negator), for a loss on that token's
             own classifier logits; or every token, its target margin the word's score where it
             ends a lexicon word and 0 elsewhere, so that the mean over a text's tokens adds up
             the lexicon as AFINN does. This teaches the lexicon in context rather than alone.

None of it comes from the imdb sentences or the held-out ones.
"""

import json
import os
import random
import re

from finetune_sentiment import _NPM_PUNCT, afinn_score

# a word as npm sentiment's tokenizer (finetune_sentiment.npm_tokenize) finds it: a run of
# anything but whitespace and the punctuation it blanks
_NPM_WORD = re.compile(r"[^\s" + _NPM_PUNCT.pattern[1:-1] + "]+")

_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[A-Z\"'])")


def _sentences(text):
    for para in re.split(r"\n\s*\n", text):
        for s in _SENTENCE_END.split(" ".join(para.split())):
            if 20 <= len(s) <= 300:
                yield s


def _train_texts(data_dir):
    for name in ("sotu/train.txt", "brown/train.txt"):
        with open(os.path.join(data_dir, name), encoding="utf-8") as f:
            yield f.read()
    with open(os.path.join(data_dir, "mail/train.jsonl"), encoding="utf-8") as f:
        for line in f:
            text = json.loads(line)["text"]
            yield text.split("\n\n", 1)[-1]  # the body, not the Subject: line


def load_lexicon(data_dir):
    with open(os.path.join(data_dir, "sentiment/afinn-165.json"), encoding="utf-8") as f:
        labels = json.load(f)
    negators = {}
    neg_path = os.path.join(data_dir, "pkg/sentiment/languages/en/negators.json")
    if os.path.exists(neg_path):
        with open(neg_path, encoding="utf-8") as f:
            negators = json.load(f)
    return labels, negators


def lexicon_words(labels):
    """Every AFINN entry with a non-zero score as {"text", "label"}."""
    return [{"text": w, "label": int(v > 0)} for w, v in sorted(labels.items()) if v != 0]


def lexicon_sentences(data_dir, labels, negators, min_abs=2, seed=0):
    """Training-text sentences the lexicon scores at least min_abs from 0, classes balanced."""
    by_label = {0: [], 1: []}
    seen = set()
    for text in _train_texts(data_dir):
        for s in _sentences(text):
            if s in seen:
                continue
            seen.add(s)
            score = afinn_score(s, labels, negators)
            if abs(score) >= min_abs:
                by_label[int(score > 0)].append({"text": s, "label": int(score > 0)})
    n = min(len(by_label[0]), len(by_label[1]))
    rng = random.Random(seed)
    out = []
    for lab in (0, 1):
        rng.shuffle(by_label[lab])
        out += by_label[lab][:n]
    rng.shuffle(out)
    return out


def token_marks(ids, id_to_bytes, labels, negators):
    """[(position, score)]: the last token of each lexicon word in the token sequence ids, with
    the word's score (negated after a negator, as npm sentiment scores). Works on the
    tokens' bytes read as Latin-1, so each byte is one character and a window cut inside a
    UTF-8 sequence still lines up; the lexicon's words are ASCII."""
    ends, pos = [], 0
    for i in ids:
        pos += len(id_to_bytes[i])
        ends.append(pos)
    text = b"".join(id_to_bytes[i] for i in ids).decode("latin-1").lower()
    marks, prev, t = [], None, 0
    for m in _NPM_WORD.finditer(text):
        word = m.group(0)
        v = labels.get(word, 0)
        if v:
            if prev in negators:
                v = -v
            while ends[t] < m.end():
                t += 1
            marks.append((t, v))
        prev = word
    return marks
