"""finetune-kit: fine-tune Hugging Face transformers from one YAML recipe."""

__version__ = "0.1.0"
