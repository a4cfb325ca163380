"""`python -m arenapref.cli ...` (what torchrun and accelerate launch start)."""

from arenapref.cli import main

main()
