"""Dataset readers, tokenizer, vocabulary and length-bucketed batches."""

from vsekit.data.batching import bucketed_batches, collate
from vsekit.data.readers import DatasetReader, Split
from vsekit.data.tokenize import tokenize
from vsekit.data.vocab import Vocab
from vsekit.text.batch import TextBatch

__all__ = ["DatasetReader", "Split", "TextBatch", "Vocab", "bucketed_batches", "collate", "tokenize"]
