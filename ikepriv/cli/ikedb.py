"""`ikedb` entry point; the command arrives with the daemon issue."""

import sys


def main() -> int:
    print("ikedb: not yet available", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main())
