"""From the owner's documents to chunks of one tokenizer (on the owner's machine).

A source is a folder of ``.txt``/``.md`` files (searched recursively; a document's
id is its path relative to the folder) or a JSONL file of ``{"id", "text"}``
lines. Each document is tokenized with the model's tokenizer (no special tokens)
and cut into windows of ``chunk_tokens`` tokens that overlap by ``overlap``:
a long document is chunked, never truncated. Chunk ids are ``<doc id>#<n>``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

from ..errors import InvalidInput

SUFFIXES = (".txt", ".md")
MAX_ID_CHARS = 256

#: warn(message): a document skipped, and why (the file is named, never its text)
Warn = Callable[[str], None]


@dataclass(frozen=True)
class Document:
    id: str
    text: str

    def __repr__(self) -> str:
        return f"Document({self.id!r}, text=HIDDEN)"


@dataclass(frozen=True)
class Chunk:
    id: str
    tokens: tuple[int, ...]

    def __repr__(self) -> str:
        return f"Chunk({self.id!r}, {len(self.tokens)} tokens=HIDDEN)"


def read_documents(path: str | Path, warn: Warn | None = None) -> list[Document]:
    """The documents at ``path`` (folder or JSONL); refuses an empty source and duplicate ids."""
    path = Path(path)
    warn = warn or (lambda _msg: None)
    if path.is_dir():
        docs = list(_folder(path, warn))
    elif path.is_file():
        docs = list(_jsonl(path))
    else:
        raise InvalidInput(f"{path}: no such folder or JSONL file")
    seen: dict[str, int] = {}
    for d in docs:
        seen[d.id] = seen.get(d.id, 0) + 1
    dups = sorted(i for i, n in seen.items() if n > 1)
    if dups:
        raise InvalidInput(f"duplicate document ids: {', '.join(dups[:10])}{' ...' if len(dups) > 10 else ''}")
    docs = [d for d in docs if d.text.strip() or warn(f"skipped {d.id}: empty document")]
    if not docs:
        raise InvalidInput(f"{path}: no documents (a folder of .txt/.md files or a JSONL of {{'id', 'text'}} lines)")
    return docs


def _folder(root: Path, warn: Warn) -> Iterator[Document]:
    for f in sorted(p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in SUFFIXES):
        rel = f.relative_to(root).as_posix()
        try:
            text = f.read_bytes().decode("utf-8")
        except UnicodeDecodeError:
            warn(f"skipped {rel}: not UTF-8")
            continue
        yield Document(_check_id(rel, rel), text)


def _jsonl(path: Path) -> Iterator[Document]:
    try:
        lines = path.read_bytes().decode("utf-8").splitlines()
    except UnicodeDecodeError:
        raise InvalidInput(f"{path}: not UTF-8") from None
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except ValueError:
            raise InvalidInput(f"{path}:{n}: not a JSON object") from None
        if not isinstance(row, dict) or not isinstance(row.get("id"), (str, int)) or not isinstance(row.get("text"), str):
            raise InvalidInput(f'{path}:{n}: each line must be {{"id": <string>, "text": <string>}}')
        yield Document(_check_id(str(row["id"]), f"{path}:{n}"), row["text"])


def _check_id(doc_id: str, where: str) -> str:
    if not doc_id or len(doc_id) > MAX_ID_CHARS or any(ord(c) < 32 for c in doc_id):
        raise InvalidInput(f"{where}: document ids are 1-{MAX_ID_CHARS} printable characters")
    return doc_id


def chunk_tokens(ids: list[int], size: int, overlap: int) -> list[list[int]]:
    """Windows of ``size`` tokens, each starting ``size - overlap`` after the last;
    the last window ends at the last token."""
    if size < 1 or not 0 <= overlap < size:
        raise InvalidInput("need chunk tokens >= 1 and 0 <= overlap < chunk tokens")
    step = size - overlap
    out = []
    for start in range(0, max(len(ids) - overlap, 1), step):
        out.append(ids[start : start + size])
    return [w for w in out if w]


def chunk_documents(docs: list[Document], encode: Callable[[str], list[int]], size: int, overlap: int) -> list[Chunk]:
    """Every document cut into token windows (ids ``<doc id>#<n>``)."""
    chunks = []
    for d in docs:
        for n, window in enumerate(chunk_tokens(encode(d.text), size, overlap)):
            chunks.append(Chunk(f"{d.id}#{n}", tuple(window)))
    if not chunks:
        raise InvalidInput("the documents hold no tokens")
    return chunks


__all__ = ["Chunk", "Document", "chunk_documents", "chunk_tokens", "read_documents"]
