"""Model cards and publishing: every saved folder gets a README.md the Hub (and a human) can read.

The card carries YAML metadata (library, tags, datasets, metrics as model-index), data statistics and the
cleaning summary, the tokenizer layout, the exact command and config, the evaluation table with baselines,
and a usage snippet that runs with plain ``transformers`` (tested by executing it against the folder).
"""

from __future__ import annotations

import shlex
import sys
from pathlib import Path

import yaml

from bertrec.atomic import atomic_write_text

CARD_FILE = "README.md"
IGNORED_ON_PUSH = ["checkpoints/*", "checkpoints/**", ".*"]


def usage_snippet(folder: str, objective: str, layout: str, action: str | None = None) -> str:
    """Python that scores all items for one history with plain transformers (no bertrec needed).

    With ``action`` (a fine-tuned "next purchase" model) the prompt names the action of the event to predict,
    where the layout has action tokens.
    """
    auto = "AutoModelForMaskedLM" if objective == "masked" else "AutoModelForCausalLM"
    if "+" in layout:
        return _stacked_snippet(folder, auto, objective, layout.split("+"), action)
    fields = layout.split()
    event = " ".join({"time": "<t:start>", "action": "<a:view>", "item": "{item}"}[f] for f in fields)
    next_action = f"<a:{action}>" if action else "[MASK]"
    if objective == "masked":  # the next event: its time bucket, then its (masked) action and the masked item
        prompt = " ".join({"time": "<t:0>", "action": next_action, "item": "[MASK]"}[f] for f in fields)
    else:  # a causal model predicts the item after the history (and the current-time bucket, the action)
        prompt = " ".join({"time": "<t:0>", "action": next_action, "item": ""}[f] for f in fields)
        prompt = prompt.replace("[MASK]", "").strip()
    return f'''import math

import torch
from transformers import AutoTokenizer, {auto}

tokenizer = AutoTokenizer.from_pretrained("{folder}")
model = {auto}.from_pretrained("{folder}").eval()
item_ids = sorted(i for token, i in tokenizer.get_vocab().items() if token.startswith("<i:"))
item = tokenizer.convert_ids_to_tokens(item_ids[0])
history = "{event}".format(item=item) + " {prompt}"
with torch.no_grad():
    scores = model(**tokenizer(history.strip(), return_tensors="pt")).logits[0, -1, item_ids]
{{repeat}}top10 = tokenizer.convert_ids_to_tokens([item_ids[i] for i in scores.topk(10).indices])
print(top10)
'''.replace(
        "{repeat}",
        _score_terms_snippet(
            folder, "[[i] for i in tokenizer(history.strip())['input_ids']]", 0, None, None, None, objective
        ),
    )


def _stacked_snippet(folder: str, auto: str, objective: str, fields: list[str], action: str | None) -> str:
    """One position per event: each event's tokens are looked up and their embeddings summed (``inputs_embeds``);
    a causal model's rows also carry the next event's gap and action (``<next:t:N>``, ``<next:a:NAME>``)."""
    first = {"time": "<t:start>", "action": "<a:view>", "item": "a"}
    second = {"time": "<t:3>", "action": "<a:view>", "item": "b"}
    asked = f"<a:{action}>" if action else "[MASK]"
    next_names = [n for n in ("time", "action") if n in fields] if objective == "next" else []
    follows = {"time": "<next:t:3>", "action": "<next:a:view>"}
    now = {"time": "<next:t:0>", "action": f"<next:a:{action}>" if action else "[MASK]"}
    rows = [
        [first[f] for f in fields] + [follows[n] for n in next_names],
        [second[f] for f in fields] + [now[n] for n in next_names],
    ]
    if objective == "masked":  # the event to predict: its time bucket, the asked action, [MASK] for the item
        rows.append([{"time": "<t:0>", "action": asked, "item": "[MASK]"}[f] for f in fields])
    text = ",\n          ".join("[" + ", ".join(t if t in ("a", "b") else repr(t) for t in row) + "]" for row in rows)
    item, act = fields.index("item"), fields.index("action") if "action" in fields else None
    asked_column = (
        (len(fields) + next_names.index("action") if "action" in next_names else act) if act is not None else None
    )
    gap_column = None
    if "time" in fields:
        gap_column = len(fields) + next_names.index("time") if objective == "next" else fields.index("time")
    return f'''import math

import torch
from transformers import AutoTokenizer, {auto}

tokenizer = AutoTokenizer.from_pretrained("{folder}")
model = {auto}.from_pretrained("{folder}").eval()
vocab = tokenizer.get_vocab()
item_ids = sorted(i for token, i in vocab.items() if token.startswith("<i:"))
a, b = tokenizer.convert_ids_to_tokens(item_ids[:2])
# one row per event, its tokens summed at one position: {" ".join(fields)}{
        " then the gap to and action of the event after it (the last row: the asked event's, [MASK] for any action)"
        if next_names
        else ""
    }
events = [{text}]
ids = torch.tensor([tokenizer.convert_tokens_to_ids(row) for row in events])[None]
with torch.no_grad():
    embeds = model.get_input_embeddings()(ids).sum(dim=2)
    scores = model(inputs_embeds=embeds).logits[0, -1, item_ids]
{
        _score_terms_snippet(folder, "ids[0].tolist()", item, act, asked_column, gap_column, objective)
    }top10 = tokenizer.convert_ids_to_tokens([item_ids[i] for i in scores.topk(10).indices])
print(top10)
'''


def _event_positions(layout: str) -> str:
    if "+" in layout:
        return f"each event is one position, the sum of its {len(layout.split('+'))} tokens' embeddings."
    return f"each event is {len(layout.split())} token(s)."


def _score_terms_snippet(
    folder: str, rows: str, item: int, action: int | None, asked: int | None, gap: int | None, objective: str
) -> str:
    """Adds the score terms a model may carry to its stock logits, in the library's order: first
    ``transitions.safetensors`` weighted by ``config.transition_weight`` to the last item's successors
    (``bertrec.transitions``), then ``config.repeat_bias`` over the history's own items (``bertrec.repeats``),
    added, or mixed in by ``config.repeat_gate``."""
    back = "len(rows) - 1 - k" if objective == "next" else "len(rows) - 2 - k"
    action_of = f"actions.get(row[{action}], 0)" if action is not None else "0"
    asked_of = f"asked.get(rows[-1][{asked}], 0)" if asked is not None else "0"
    gap_of = f"gaps.get(rows[-1][{gap}], 0)" if gap is not None else "0"
    time_prefix = "<next:t:" if objective == "next" else "<t:"
    masked_asks = (
        "asked = actions  # a masked model reads the asked action in the action field\n"
        if objective == "masked"
        else ""
    )
    return f"""# score terms (bertrec.repeats, bertrec.transitions) read the asked action, the gap to it, the last event
vocab, rows, column = tokenizer.get_vocab(), {rows}, {{i: c for c, i in enumerate(item_ids)}}
actions = {{i: n + 1 for n, i in enumerate(sorted(i for t, i in vocab.items() if t.startswith("<a:")))}}
asked = {{i: n + 1 for n, i in enumerate(sorted(i for t, i in vocab.items() if t.startswith("<next:a:")))}}
{masked_asks}gaps = {{i: n + 1 for n, i in enumerate(sorted(i for t, i in vocab.items() if t.startswith("{time_prefix}")
                                              and t != "<t:start>"))}}
q, gap, last = {asked_of}, {gap_of}, rows[{-1 if objective == "next" else -2}]  # last: the last event
if getattr(model.config, "transition_weight", None) and last[{item}] in column:  # the last item's successors
    from safetensors.torch import load_file
    from transformers.utils import cached_file

    table = load_file(cached_file("{folder}", "transitions.safetensors"))
    weight, x = model.config.transition_weight[q][gap][{action_of.replace("row[", "last[")}], column[last[{item}]]
    for c, count in zip(table["successors"][x].tolist(), table["counts"][x].tolist()):
        if c >= 0:
            scores[c] += weight * math.log1p(count)
if getattr(model.config, "repeat_bias", None):  # the user's own items, by action, gap and recency
    bias, seen = model.config.repeat_bias, []
    for k, row in enumerate(rows):
        distance = {back}
        if distance >= 0 and row[{item}] in column:
            seen.append((column[row[{item}]], bias[q][gap][{action_of}][min(int(math.log2(distance + 1)), 7)]))
    gate = getattr(model.config, "repeat_gate", None)
    if gate is None:  # a bonus: each item's largest value added to its score
        bonus = {{}}
        for c, value in seen:
            bonus[c] = max(value, bonus.get(c, -math.inf))
        for c, value in bonus.items():
            scores[c] += value
    elif seen:  # a mixture: gate * softmax over the history's events (summed per item) + (1 - gate) * softmax
        g = torch.tensor(gate[q][gap][{action_of.replace("row[", "last[")}])
        shares = torch.softmax(torch.tensor([value for _, value in seen]), dim=0)
        repeat = torch.zeros_like(scores).index_add_(0, torch.tensor([c for c, _ in seen]), shares)
        log_repeat = torch.where(repeat > 0, repeat.clamp_min(1e-30).log(), -math.inf)
        scores = torch.logaddexp(
            torch.nn.functional.logsigmoid(g) + log_repeat,
            torch.nn.functional.logsigmoid(-g) + scores.log_softmax(dim=0),
        )
"""


def model_card(*, repo_id: str, metrics: dict, config: dict, report_summary: str | None, command: str) -> str:
    data, test = metrics["data"], metrics["test"]
    finetuning = metrics.get("finetuning")
    action = (finetuning or {}).get("target_action") if "action" in data["layout"].split() else None
    dataset = config.get("dataset", "synthetic")
    results = [
        {"type": name, "value": round(value, 4), "name": f"test {name.upper()}"}
        for name, value in test.items()
        if "@" in name
    ]
    metadata = {
        "library_name": "transformers",
        "pipeline_tag": "fill-mask" if data["objective"] == "masked" else "text-generation",
        "tags": ["bertrec", "recommendation", "sequential-recommendation", config.get("model_type", "")],
        "datasets": [Path(dataset).name],
        "model-index": [{"name": repo_id, "results": [{
            "task": {"type": "sequential-recommendation", "name": f"next {action or 'item'} ranking"},
            "dataset": {"type": Path(dataset).name, "name": Path(dataset).name},
            "metrics": results,
        }]}],
    }  # fmt: skip
    keys = [k for k in ("hr@10", "ndcg@10", "mrr@10", "hr@50", "ndcg@50") if k in test]
    rows = {"this model": test, **{name: b["test"] for name, b in metrics["baselines"].items()}}
    table = ["| model | " + " | ".join(keys) + " |", "|---" * (len(keys) + 1) + "|"]
    table += [f"| {name} | " + " | ".join(f"{m[k]:.4f}" for k in keys) + " |" for name, m in rows.items()]
    split = {k: v for k, v in data.items() if k not in ("layout", "objective", "item_attributes")}
    return "\n".join([
        "---", yaml.safe_dump(metadata, sort_keys=False).strip(), "---", "",
        f"# {repo_id}", "",
        f"A {config.get('model_type')} {data['objective']}-event sequential recommender trained with "
        "[bertrec](https://github.com/bertrec/bertrec). It is a stock `transformers` model: no bertrec and no "
        "remote code are needed to use it.", "",
        "## Evaluation", "",
        f"Full ranking over all {data['items']} items, {test['users']} test users ({data.get('protocol')}).", "",
        *_final_fit_note(data),
        *table, "",
        "## Data", "", "```", yaml.safe_dump(split, sort_keys=False).strip(), "```", "",
        "Cleaning report:", "", "```", (report_summary or "no cleaning report").strip(), "```", "",
        "## Tokenizer", "",
        f"Layout `{data['layout']}`: " + _event_positions(data["layout"]) + " Item tokens are "
        "`<i:ID>`, actions `<a:NAME>`, time buckets `<t:N>` (see `event_tokenizer.json`).", "",
        *_item_tokens(data.get("item_attributes")),
        *_finetuning_section(finetuning),
        "## Usage", "", "```python", usage_snippet(repo_id, data["objective"], data["layout"], action).strip(),
        "```", "",
        "## Training", "", "```bash", command, "```", "", "```yaml", yaml.safe_dump(config, sort_keys=False).strip(),
        "```", "",
    ])  # fmt: skip


def _item_tokens(attributes: dict | None) -> list[str]:
    """The item-token scheme, when items are more than opaque ids (``bertrec.item_content``)."""
    if not attributes:
        return ["Item tokens: ids only (one learned row per item)."]
    columns = ", ".join(
        f"`{name}` ({c['values']} values, on {c['items_with_value']} of {attributes['items']} items)"
        for name, c in attributes["columns"].items()
    )
    return [
        f"Item tokens: {attributes['scheme']}. Each item's embedding row is composed from the mean of its "
        f"attribute tokens `<f:COLUMN:VALUE>` ({columns}; `<f:COLUMN:[NONE]>` where an item has no value; "
        "`sid1`.. are semantic-ID codes from the item text), plus its own id row unless the scheme says none. "
        "The rows saved "
        "here are already composed, so the model scores items as it was trained; the attribute rows stay in the "
        "vocabulary, and the item-to-attribute table is in `event_tokenizer.json`.", "",
        *_semantic_ids(attributes.get("semantic_ids")),
        *_text_vectors(attributes.get("text_vectors")),
    ]  # fmt: skip


def _text_vectors(text: dict | None) -> list[str]:
    if not text:
        return []
    columns = ", ".join(f"`{c}`" for c in text["text_columns"])
    return [
        f"Text vectors: each item row also holds the item's vector from {columns} "
        f"by {text['encoder']}, through a learned linear map; encoder and map are saved as `semantic_ids.json` / "
        "`semantic_ids.safetensors` (`text_projection`), so `Recommender.add_items` places a new item by its text.",
        "",
    ]  # fmt: skip


def _semantic_ids(codes: dict | None) -> list[str]:
    if not codes:
        return []
    return [
        f"Semantic IDs: {codes['levels']} levels of {codes['codebook_size']} residual k-means codes over item "
        f"vectors from {', '.join(f'`{c}`' for c in codes['text_columns'])} by {codes['encoder']}, fit on the "
        "training catalogue and saved as `semantic_ids.json` / `semantic_ids.safetensors`: "
        "`Recommender.add_items` gives a new item its codes from that text alone.", "",
    ]  # fmt: skip


def _final_fit_note(data: dict) -> list[str]:
    if not data.get("validation_in_training"):
        return []
    return [
        "A final fit (`--train_on_validation`): each user's validation target was trained on too, as in a retrain "
        "on all data before deployment; its configuration and epoch count were chosen on validation by an "
        "earlier run, so this card has no validation figures.", "",
    ]  # fmt: skip


def _finetuning_section(finetuning: dict | None) -> list[str]:
    if not finetuning:
        return []
    share = 100 * finetuning["trainable_fraction"]
    lines = [
        "## Fine-tuning", "",
        f"Fine-tuned from `{finetuning['base_model']}` with `{finetuning['method']}` for the `{finetuning['task']}` "
        f"task" + (f" (target action `{finetuning['target_action']}`)" if finetuning.get("target_action") else "")
        + f": {finetuning['trainable']:,} of {finetuning['total']:,} parameters trained ({share:.2f}%).", "",
    ]  # fmt: skip
    if finetuning["method"] == "lora":
        lines += [
            "This folder is the merged, standalone model. The LoRA adapter alone is in `adapter/` and loads with "
            "`PeftModel.from_pretrained(base_model, 'adapter')`"
            + (" after `base_model.resize_token_embeddings(len(tokenizer), mean_resizing=False)` (new items)"
               if finetuning.get("new_items") else "") + ".", "",
        ]  # fmt: skip
    return lines


def write_model_card(folder: str | Path, *, repo_id: str, metrics: dict, config: dict,
                     report_summary: str | None) -> Path:  # fmt: skip
    command = " ".join(shlex.quote(a) for a in ["accelerate", "launch", *sys.argv])
    path = Path(folder) / CARD_FILE
    atomic_write_text(path, model_card(repo_id=repo_id, metrics=metrics, config=config,
                                       report_summary=report_summary, command=command))  # fmt: skip
    return path


def push_folder(folder: str | Path, repo_id: str, *, private: bool = False, token: str | None = None) -> str:
    """Upload a saved folder (without checkpoints) through ``huggingface_hub``, the standard Hub client."""
    from huggingface_hub import HfApi

    api = HfApi(token=token)
    api.create_repo(repo_id, private=private, exist_ok=True)
    commit = api.upload_folder(repo_id=repo_id, folder_path=str(folder), ignore_patterns=IGNORED_ON_PUSH,
                               commit_message="Upload bertrec model")  # fmt: skip
    return str(getattr(commit, "commit_url", commit))
