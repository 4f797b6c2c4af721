"""accelerate launch recipes/finetune.py --base_model outputs/pretrain [--config file.yaml] [--flag value ...]"""

from bertrec.cli import run_recipe

if __name__ == "__main__":
    run_recipe("finetune")
