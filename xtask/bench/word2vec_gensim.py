# The gensim side of the word2vec benchmark; dlhist/examples/word2vec_bench.rs writes the corpus, runs this script
# between its own runs (so both see the same machine load) and evaluates both sides' vectors with the same code.
"""Train gensim's Word2Vec on a text8-style corpus file and save the vectors.

Run: python word2vec_gensim.py CORPUS OUT_DIR '{"sg": 1, "vector_size": 100, ...}'

CORPUS is one line of space-separated words (text8's format). The settings are gensim's Word2Vec keyword
arguments. The corpus is read into memory first (sentences of 10 000 words, as gensim's Text8Corpus cuts it), so
the timed part is training proper, as on dlhist's side. Prints one JSON line with the timing and gensim's own
evaluation of its vectors (for cross-checking dlhist's evaluation), and writes OUT_DIR/vocab.txt ("word count" per
line, most frequent first) and OUT_DIR/vectors.f32 (the input vectors, row-major little-endian float32)."""
import json, os, sys, time

from gensim.models import Word2Vec
from gensim.models.word2vec_inner import FAST_VERSION
from gensim.test.utils import datapath

corpus_path, out_dir, settings = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
with open(corpus_path) as f:
    words = f.read().split()
sentences = [words[i:i + 10_000] for i in range(0, len(words), 10_000)]

model = Word2Vec(**settings)
t0 = time.perf_counter()
model.build_vocab(sentences)
t1 = time.perf_counter()
model.train(sentences, total_examples=model.corpus_count, epochs=model.epochs)
t2 = time.perf_counter()

wv = model.wv
os.makedirs(out_dir, exist_ok=True)
with open(os.path.join(out_dir, "vocab.txt"), "w") as f:
    for w in wv.index_to_key:
        f.write(f"{w} {wv.get_vecattr(w, 'count')}\n")
wv.vectors.astype("<f4").tofile(os.path.join(out_dir, "vectors.f32"))

ws = wv.evaluate_word_pairs(datapath("wordsim353.tsv"))
sl = wv.evaluate_word_pairs(datapath("simlex999.txt"))
an, _ = wv.evaluate_word_analogies(datapath("questions-words.txt"), restrict_vocab=30_000)
print(json.dumps({
    "impl": "gensim",
    "fast_version": FAST_VERSION,
    "corpus_words": len(words),
    "epochs": model.epochs,
    "setup_seconds": t1 - t0,
    "train_seconds": t2 - t1,
    "words_per_second": len(words) * model.epochs / (t2 - t1),
    "vocab": len(wv.index_to_key),
    "gensim_eval": {"wordsim353_rho": ws[1].statistic, "simlex999_rho": sl[1].statistic, "analogy_accuracy_30k": an},
}))
