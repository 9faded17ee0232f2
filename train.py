"""Train a xiangqi GPT: ``python train.py --help``. Everything lives in :mod:`xiangqi_gpt.model.training`."""

import sys

from xiangqi_gpt.model.training import main

if __name__ == "__main__":
    sys.exit(main())
