"""Model cards on every saved folder, their usage snippet run for real, and the Hub upload at its boundary."""

import re
import subprocess
import sys
from unittest import mock

import yaml

from bertrec.hub import push_folder


def card_parts(folder):
    text = (folder / "README.md").read_text()
    metadata = yaml.safe_load(text.split("---")[1])
    snippet = re.search(r"```python\n(.*?)```", text, re.S).group(1)
    return text, metadata, snippet


def test_card_metadata_and_sections(pretrained):
    for model_type, run in pretrained.items():
        text, metadata, _ = card_parts(run["dir"])
        assert metadata["library_name"] == "transformers" and "bertrec" in metadata["tags"]
        results = metadata["model-index"][0]["results"][0]["metrics"]
        ndcg = next(r["value"] for r in results if r["type"] == "ndcg@10")
        assert abs(ndcg - run["metrics"]["test"]["ndcg@10"]) < 1e-4
        for section in ("## Evaluation", "| popularity |", "| markov |", "Cleaning report:", "## Tokenizer", "```bash"):
            assert section in text, (model_type, section)


def _each_in_its_namespace(snippets: list[str]) -> str:
    """One process runs every snippet (a Python start-up with transformers costs seconds; the test budget is
    five minutes), each in a namespace of its own, its output after a separator line."""
    return "".join(f"print({SEPARATOR!r})\nexec({code!r}, {{'__name__': '__main__'}})\n" for code in snippets)


SEPARATOR = "=== next snippet ==="


def test_usage_snippet_runs_against_the_saved_folder(pretrained, tmp_path):
    snippets = []
    for run in pretrained.values():
        folder = run["dir"]
        _, _, snippet = card_parts(folder)
        snippets.append(snippet.replace(folder.name, str(folder)))
    code = "import sys\nsys.modules['bertrec'] = None\n" + _each_in_its_namespace(snippets)
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=240, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    outputs = result.stdout.split(SEPARATOR)[1:]
    assert len(outputs) == len(pretrained) and all(output.count("<i:") == 10 for output in outputs)


def test_push_uploads_the_folder_without_checkpoints(pretrained):
    folder = pretrained["gpt2"]["dir"]
    with (
        mock.patch("huggingface_hub.HfApi.create_repo") as create,
        mock.patch(
            "huggingface_hub.HfApi.upload_folder", return_value=mock.Mock(commit_url="https://hub/commit/1")
        ) as upload,
    ):
        url = push_folder(folder, "someone/shop-recommender", private=True)
    assert url == "https://hub/commit/1"
    create.assert_called_once_with("someone/shop-recommender", private=True, exist_ok=True)
    kwargs = upload.call_args.kwargs
    assert kwargs["folder_path"] == str(folder) and "checkpoints/*" in kwargs["ignore_patterns"]


def test_card_snippet_scores_one_user_as_the_library_evaluates(pretrained, tmp_path):
    """The default (stacked, repeat-scored) models: the card's plain-transformers code, fed one test user's
    prompt, gives the library's evaluation scores, repeat scores included."""
    import json

    import torch

    from bertrec.args import DataArguments
    from bertrec.collators import pad_sequences
    from bertrec.evaluation import EvalBatch, encode_prompts, model_scorer
    from bertrec.modeling import load_model, model_objective
    from bertrec.recipes.common import prepare_data
    from bertrec.tokenization import EventTokenizer
    from tests.conftest import run_without_bertrec

    split = prepare_data(DataArguments(synthetic_users=400)).split
    snippets, expected_scores = [], []
    for model_type, run in pretrained.items():
        folder = run["dir"]
        model, tokenizer = load_model(str(folder)).eval(), EventTokenizer.load(folder)
        assert tokenizer.spec.stacked and model.repeat_bias.abs().sum() > 0, model_type
        example = split.test.head(1)
        prompt = encode_prompts(tokenizer, example, model_objective(model))[0]
        batch = pad_sequences([prompt], tokenizer.pad_id)
        expected = model_scorer(model, tokenizer)(
            EvalBatch(batch["input_ids"], batch["attention_mask"], None, None, None)
        )
        rows = [[tokenizer.inverse_vocab[i] for i in row] for row in prompt.tolist()]
        _, _, snippet = card_parts(folder)
        code = re.sub(r"events = \[.*?\]\]\n", f"events = {rows!r}\n", snippet, flags=re.S)
        snippets.append(code.replace(folder.name, str(folder)) + "\nimport json\nprint(json.dumps(scores.tolist()))\n")
        expected_scores.append(expected[0])
    result = run_without_bertrec(_each_in_its_namespace(snippets), tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    outputs = result.stdout.split(SEPARATOR)[1:]
    assert len(outputs) == len(expected_scores)
    for output, expected in zip(outputs, expected_scores):
        scores = torch.tensor(json.loads(output.strip().splitlines()[-1]))
        torch.testing.assert_close(scores, expected, atol=1e-5, rtol=0)
