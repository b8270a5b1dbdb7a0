"""vlm: local vision-language-model inference on your own GPU, built on vLLM."""

__version__ = "0.1.0"
