"""What bertrec promises about the files it reads and writes: weights only as safetensors, no code from model
folders, no unpickling of files a user hands in."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "bertrec"
UNSAFE_CALLS = {"trust_remote_code", "load", "loads", "Unpickler"}


def _calls(path: Path):
    tree = ast.parse(path.read_text(), filename=str(path))
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            func = node.func
            name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
            owner = func.value.id if isinstance(func, ast.Attribute) and isinstance(func.value, ast.Name) else ""
            yield owner, name, node


def test_the_library_never_trusts_remote_code_nor_unpickles():
    offenders = []
    for path in sorted(PACKAGE.rglob("*.py")):
        for owner, name, node in _calls(path):
            keywords = {k.arg: k.value for k in node.keywords}
            trusted = keywords.get("trust_remote_code")
            if trusted is not None and not (isinstance(trusted, ast.Constant) and trusted.value is False):
                offenders.append(f"{path.name}:{node.lineno} trust_remote_code")
            if owner in ("pickle", "dill", "joblib") and name in UNSAFE_CALLS:
                offenders.append(f"{path.name}:{node.lineno} {owner}.{name}")
            if owner == "torch" and name == "load":
                safe = keywords.get("weights_only")
                if not (isinstance(safe, ast.Constant) and safe.value is True):
                    offenders.append(f"{path.name}:{node.lineno} torch.load without weights_only=True")
    assert not offenders, offenders


def test_saved_model_folders_hold_weights_as_safetensors_only(pretrained, finetuned):
    folders = [run["dir"] for run in pretrained.values()] + [run["dir"] for run in finetuned.values()]
    for folder in folders:
        top_level = [p for p in Path(folder).iterdir() if p.is_file()]
        assert any(p.suffix == ".safetensors" for p in top_level), folder
        pickled = [p.name for p in top_level if p.suffix in (".bin", ".pt", ".pth", ".pkl", ".pickle")]
        assert not pickled, (folder, pickled)
