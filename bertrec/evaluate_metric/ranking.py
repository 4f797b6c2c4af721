"""bertrec full-ranking metrics as a Hugging Face ``evaluate`` module.

    import evaluate
    metric = evaluate.load("bertrec/evaluate_metric/ranking.py")             # scores per item + target index
    metric.compute(predictions=[[0.1, 0.9, 0.3]], references=[1], k=[1, 10])
    ranks = evaluate.load("bertrec/evaluate_metric/ranking.py", "ranks")    # or target ranks directly
    ranks.compute(predictions=[1, 4, float("inf")], k=[10])

It takes full score vectors or target ranks, never top-k lists, which lose ties. Ties count against the
model (pessimistic rank); a reference of -1 (an item unknown to the model) or an infinite rank is a miss.
"""

import datasets
import evaluate
import torch

from bertrec.metrics import metrics_from_ranks, pessimistic_ranks

_CITATION = ""
_DESCRIPTION = __doc__
_KWARGS_DESCRIPTION = """
Args (config "scores", the default):
    predictions: one list of item scores per example (all items of the catalogue, same length).
    references: the target item index per example; -1 for an item the model cannot score.
    k: cut-offs (int or list of ints), default [10].
Args (config "ranks"):
    predictions: the 1-based rank of each target (inf for unrankable), k as above.
Returns: hr@K, ndcg@K, mrr@K, recall@K for every K, and users.
"""


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class Ranking(evaluate.Metric):
    def _info(self):
        if self.config_name == "ranks":
            features = datasets.Features({"predictions": datasets.Value("float64")})
        else:
            features = datasets.Features(
                {
                    "predictions": datasets.Sequence(datasets.Value("float32")),
                    "references": datasets.Value("int64"),
                }
            )
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_KWARGS_DESCRIPTION,
            features=features,
        )

    def _compute(self, predictions, references=None, k=10):
        ks = [k] if isinstance(k, int) else list(k)
        if self.config_name == "ranks":
            return metrics_from_ranks(predictions, ks)
        scores = torch.as_tensor(predictions, dtype=torch.float32)
        ranks = pessimistic_ranks(scores, torch.as_tensor(references, dtype=torch.long))
        return metrics_from_ranks(ranks, ks)
