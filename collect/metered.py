"""An lm-eval LM wrapper that meters every model call and passes the results through unchanged."""

from __future__ import annotations

from dataclasses import astuple, dataclass

import numpy as np
from lm_eval.api.model import LM

from messplus.collect.energy import Meter, Reading
from messplus.traces.importers.lmeval import request_tokens, token_counter


@dataclass(frozen=True)
class RequestCost:
    spent: Reading  # this request's share of its measurement
    prompt_tokens: int | None
    completion_tokens: int | None


def apportion(total: float | None, weights: list[float]) -> list[float | None]:
    """Split a batch's measurement across its requests in proportion to their tokens (equally if none known)."""
    if total is None:
        return [None] * len(weights)
    w = np.asarray(weights, dtype=float)
    w = w / w.sum() if w.sum() > 0 else np.full(len(w), 1 / len(w))
    return list(total * w)


def split(reading: Reading, weights: list[float]) -> list[Reading]:
    """Every figure of a reading apportioned alike."""
    shares = [apportion(v, weights) for v in astuple(reading)]
    return [Reading(*share) for share in zip(*shares, strict=True)]


class MeteredLM(LM):
    """Exact mode (batch=None) measures one request at a time, as the MESS+ paper did; batched mode measures
    `batch` requests together and apportions time and energy by tokens. Costs land in `records`, keyed by
    (doc_id, request index within the doc)."""

    def __init__(self, inner: LM, meter: Meter, batch: int | None = None) -> None:
        super().__init__()
        self.inner, self.meter, self.batch = inner, meter, batch
        self.records: dict[tuple[int, int], RequestCost] = {}

    def __getattr__(self, name: str):  # everything else (tokenizer, rank, chat templates) is the inner LM's
        return getattr(self.inner, name)

    def loglikelihood(self, requests, disable_tqdm: bool = False):
        return self._run("loglikelihood", requests)

    def loglikelihood_rolling(self, requests, disable_tqdm: bool = False):
        return self._run("loglikelihood_rolling", requests)

    def generate_until(self, requests, disable_tqdm: bool = False):
        return self._run("generate_until", requests)

    def _tokens(self, req, resp) -> tuple[int | None, int | None]:
        """The rule `traces import lmeval --tokenizer` uses too, so collected and imported counts agree."""
        tok = getattr(self.inner, "tokenizer", None)
        if tok is None:
            return None, None
        return request_tokens(req.request_type, req.args, resp, token_counter(tok))

    def _run(self, method: str, requests: list) -> list:
        call = getattr(self.inner, method)
        size = self.batch or 1
        out = []
        for lo in range(0, len(requests), size):
            group = requests[lo : lo + size]
            with self.meter.measure() as reading:
                results = call(group, disable_tqdm=True)
            tokens = [self._tokens(q, r) for q, r in zip(group, results, strict=True)]
            weights = [(p or 0) + (c or 0) for p, c in tokens]
            for q, (p, c), spent in zip(group, tokens, split(reading, weights), strict=True):
                self.records[q.doc_id, q.idx] = RequestCost(spent, p, c)
            out.extend(results)
        return out
