"""Training glue for the `transformer` family: the Hugging Face Trainer with pair-specific data handling."""
