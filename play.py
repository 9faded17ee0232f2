#!/usr/bin/env python
"""Play xiangqi against the GPT in the terminal: ``python play.py [--side black] [--temperature 0.5]``."""

from xiangqi_gpt.play.terminal import run_main

if __name__ == "__main__":
    run_main()
