"""medvlm: an interactive clinician demo for medical vision-language models."""
