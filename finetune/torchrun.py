"""torchrun as ``lorastack train --gpus N`` starts it: ``torch.distributed.run``'s own ``main``, unchanged, except
that a Ctrl-C or SIGTERM that stops the run ends it with the signal's exit status instead of torchrun's traceback.

Run as: python -m lorastack.finetune.torchrun [torchrun arguments] -m lorastack.cli train ...
"""

from __future__ import annotations

import sys


def main() -> None:
    from torch.distributed.elastic.multiprocessing.api import SignalException
    from torch.distributed.run import main as torchrun

    try:
        torchrun()
    except SignalException as exc:  # torchrun has already stopped its processes and said so in one line
        sys.exit(128 + int(exc.sigval))
    except KeyboardInterrupt:
        sys.exit(130)


if __name__ == "__main__":
    main()
