"""`python -m qwen3moe` = the `qwen3moe` command."""
import sys

from .cli import main

sys.exit(main())
