import argparse
import sys
from pathlib import Path

from . import run

parser = argparse.ArgumentParser(prog="python -m interp.benchmarks")
parser.add_argument("--quick", action="store_true", help="few samples, about a minute")
parser.add_argument("--check", action="store_true", help="exit 1 if a budget is broken")
parser.add_argument("--out", type=Path, default=Path("benchmarks/results"))
args = parser.parse_args()
sys.exit(run(quick=args.quick, check=args.check, out_dir=args.out))
