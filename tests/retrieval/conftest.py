"""Fixtures for retrieval: a tiny model with room for a context window, a small
corpus of distinct topics, the real edge embedder, and a KB published by its own
principal on the session's cluster."""

import pytest

from tests.conftest import client_as

DOCS = {
    "geo/france.md": "Paris is the capital of France. The Seine flows through Paris, past the Louvre and Notre-Dame. "
    "France borders Spain, Italy, Switzerland, Germany, Luxembourg and Belgium.",
    "geo/japan.txt": "Tokyo is the capital of Japan. Mount Fuji is the highest mountain in Japan, an active volcano "
    "southwest of Tokyo. 日本の首都は東京です。",
    "bio/cell.txt": "The mitochondrion is the powerhouse of the cell: it makes ATP by oxidative phosphorylation. "
    "Ribosomes translate messenger RNA into proteins.",
    "cook/bread.md": "To bake bread, mix flour, water, salt and yeast, knead the dough for ten minutes, let it rise "
    "for two hours, then bake at 230 degrees Celsius for thirty-five minutes.",
    "space/mars.txt": "Mars is the fourth planet from the Sun. Olympus Mons on Mars is the tallest volcano in the "
    "solar system. Its two moons are Phobos and Deimos.",
    "music/bach.txt": "Johann Sebastian Bach wrote the Goldberg Variations and the Brandenburg Concertos; he worked in "
    "Leipzig as Thomaskantor from 1723 until his death in 1750. " * 3,
}

QUESTIONS = [
    "What is the capital of France?",
    "Which mountain is the highest in Japan?",
    "What makes ATP in a cell?",
    "How long should bread dough rise?",
    "What are the moons of Mars?",
    "Where did Bach work?",
]


@pytest.fixture(scope="session")
def docs_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("kbdocs")
    for rel, text in DOCS.items():
        (d / rel).parent.mkdir(parents=True, exist_ok=True)
        (d / rel).write_text(text, encoding="utf-8")
    return d


@pytest.fixture(scope="session")
def embedder():
    from misuan.retrieval.embedder import Embedder

    return Embedder.load()


@pytest.fixture(scope="session")
def rag_model_dir(tmp_path_factory):
    """The tiny LLaMA with a 512-token context (its tokenizer is near character level)."""
    from tests.models.tinymodels import make_llama, save_hf

    return save_hf(tmp_path_factory.mktemp("rag") / "tiny512", make_llama(seed=5, tie=True, max_position_embeddings=512))


@pytest.fixture(scope="session")
def kb_owner(cluster3):
    return client_as(cluster3, "librarian")


@pytest.fixture(scope="session")
def kb_hosted(kb_owner, rag_model_dir, docs_dir, embedder):
    """``librarian/ragtiny`` and the KB ``librarian/notes`` chunked for it (32-token chunks)."""
    from misuan.hosting import publish_model
    from misuan.retrieval.publish import publish_kb

    publish_model(kb_owner, rag_model_dir, "ragtiny", receipt=False)
    res = publish_kb(kb_owner, docs_dir, "notes", "ragtiny", chunk_tokens=32, overlap=4, embedder=embedder)
    return res
