"""TeaForN: Teacher-Forcing with N-grams (Goodman, Ding, Soricut, EMNLP 2020), for any causal decoder.

Generic: depends on torch only and knows nothing about the model it trains. See :mod:`teaforn.core`.
"""

from .core import (FEEDS, SCHEDULES, FeedbackScale, TeaForN, TeaForNOutput, level_weights, teaforn_loss)

__all__ = ["TeaForN", "TeaForNOutput", "teaforn_loss", "level_weights", "FeedbackScale", "SCHEDULES", "FEEDS"]
