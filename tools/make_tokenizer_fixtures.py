#!/usr/bin/env python3
"""Tokenizer fixtures: a small CLIP-style BPE vocabulary in both folder layouts,
and the ids transformers' CLIPTokenizer gives for a set of prompts.

    pip install transformers tokenizers
    HF_HUB_OFFLINE=1 python3 tools/make_tokenizer_fixtures.py

Real CLIP vocabularies cannot be downloaded here, so the vocabulary is trained
(tokenizers' BPE trainer, CLIP's normalizer, pre-tokenizer and `</w>` suffix) on a
synthetic corpus. Writes, under Tests/NestDiffusionTests/Fixtures/:
  tokenizer_classic/   vocab.json + merges.txt + special_tokens_map.json + tokenizer_config.json
  tokenizer_fast/      tokenizer.json + tokenizer_config.json (as transformers 5 saves)
  tokenizer_2/         classic layout padding with "!" (SDXL's second tokenizer)
  tokenizer_ids.json   {folder: [{"prompt", "ids", "ids_with_placeholder"}]}
"""
import json
import os
import random

from tokenizers import trainers, pre_tokenizers
from transformers import CLIPTokenizer

OUT = os.path.join(os.path.dirname(__file__), "..", "Tests", "NestDiffusionTests", "Fixtures")
random.seed(7)
words = ("a photo of the an cat dog person critter bot robot sitting standing on in at beach forest city night "
         "sketch flat painting wearing red blue green hat scarf small large left right center portrait highly "
         "detailed best quality low worst lowres bad anatomy monochrome sunset snow mountains river café naïve "
         "it's they're we've i'm you'll he'd 2025 3d 4k hdr").split()
corpus = []
for _ in range(3000):
    corpus.append(" ".join(random.choice(words) for _ in range(random.randint(3, 12))))
corpus += ["ÀÉÎÕÜ àéîõü ß ø æ œ", "日本語 テキスト", "emoji 🙂🐱 ok", "punctuation!!! ?? ... --- (x) [y] {z}"]

base = CLIPTokenizer()  # empty vocabulary, CLIP's pipeline
trainer = trainers.BpeTrainer(vocab_size=1200, min_frequency=2,
                              special_tokens=["<|startoftext|>", "<|endoftext|>"],
                              initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                              end_of_word_suffix="</w>", show_progress=False)
base._tokenizer.train_from_iterator(corpus, trainer=trainer)
model = json.loads(base._tokenizer.to_str())["model"]
merges = [m if isinstance(m, str) else " ".join(m) for m in model["merges"]]

# Lay the vocabulary out the way CLIP's is: the 256 byte characters, the same with
# "</w>", one entry per merge, then the two special tokens last.
def bytes_to_unicode():
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return [chr(c) for _, c in sorted(zip(bs, cs))]

# CLIP lists the printable bytes first, then the remapped ones.
table = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
ordered = [bytes_to_unicode()[b] for b in table] + [bytes_to_unicode()[b] for b in range(256) if b not in table]
entries = ordered + [c + "</w>" for c in ordered] + ["".join(m.split(" ")) for m in merges]
entries += ["<|startoftext|>", "<|endoftext|>"]
vocab = {}
for token in entries:
    if token not in vocab:
        vocab[token] = len(vocab)

def write_classic(folder, pad):
    os.makedirs(folder, exist_ok=True)
    with open(os.path.join(folder, "vocab.json"), "w", encoding="utf-8") as f:
        json.dump(dict(sorted(vocab.items(), key=lambda kv: kv[1])), f, ensure_ascii=False)
    with open(os.path.join(folder, "merges.txt"), "w", encoding="utf-8") as f:
        f.write("#version: 0.2\n" + "\n".join(merges) + "\n")
    specials = {"bos_token": "<|startoftext|>", "eos_token": "<|endoftext|>", "unk_token": "<|endoftext|>", "pad_token": pad}
    with open(os.path.join(folder, "special_tokens_map.json"), "w") as f:
        json.dump(specials, f, indent=2)
    with open(os.path.join(folder, "tokenizer_config.json"), "w") as f:
        json.dump(dict(specials, model_max_length=77, tokenizer_class="CLIPTokenizer"), f, indent=2)

write_classic(os.path.join(OUT, "tokenizer_classic"), "<|endoftext|>")
write_classic(os.path.join(OUT, "tokenizer_2"), "!")
fast = CLIPTokenizer.from_pretrained(os.path.join(OUT, "tokenizer_classic"))
fast.save_pretrained(os.path.join(OUT, "tokenizer_fast"))
for leftover in ("vocab.json", "merges.txt", "special_tokens_map.json"):
    path = os.path.join(OUT, "tokenizer_fast", leftover)
    if os.path.exists(path):
        os.remove(path)

prompts = [
    "a photo of a cat",
    "A  Photo\tof   a DOG\n on the beach",
    "it's a critter wearing a red hat, highly detailed, 4k",
    "café naïve ÀÉÎÕÜ ß",
    "日本語 テキスト 🙂🐱",
    "punctuation!!! ?? ... (x) [y] {z}",
    "unknownwordzzz qqq xyzzy",
    "a <person> sitting on the beach with a <pet>",
    "",
    " ".join(["robot"] * 90),
    "they're 2025 3d hdr <|endoftext|> tail",
]
result = {}
for name in ("tokenizer_classic", "tokenizer_fast", "tokenizer_2"):
    tok = CLIPTokenizer.from_pretrained(os.path.join(OUT, name))
    cases = []
    for p in prompts:
        ids = tok(p, padding="max_length", max_length=77, truncation=True).input_ids
        cases.append({"prompt": p, "ids": ids})
    tok.add_tokens(["<person>", "<pet>"])
    for case in cases:
        case["ids_with_placeholder"] = tok(case["prompt"], padding="max_length", max_length=77, truncation=True).input_ids
    result[name] = {"cases": cases, "placeholder_ids": tok.convert_tokens_to_ids(["<person>", "<pet>"])}
with open(os.path.join(OUT, "tokenizer_ids.json"), "w", encoding="utf-8") as f:
    json.dump(result, f, ensure_ascii=False, indent=1)
print("vocab", len(vocab), "merges", len(merges), "->", os.path.normpath(OUT))
