"""arenapref: pairwise preference models for chatbot answers.

Given a conversation and two responses A and B, predict P(A wins), P(B wins), P(tie).
"""

from arenapref._version import __version__
from arenapref.data.record import LABELS, PairRecord, swap_labels

__all__ = ["LABELS", "PairRecord", "swap_labels", "__version__"]
