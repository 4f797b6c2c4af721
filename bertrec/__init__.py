"""bertrec: behavior logs to pretrained, hub-ready sequential recommenders on the Hugging Face stack."""

__version__ = "0.1.0"
