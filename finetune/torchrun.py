"""torchrun as ``lorastack train --gpus N`` starts it: ``torch.distributed.run``'s own ``main``, unchanged, except
that a Ctrl-C or SIGTERM that stops the run ends it with the signal's exit status instead of torchrun's traceback,
and that its training processes learn its pid (:data:`LAUNCHER_PID`): torchrun starts each in a session of its own,
so a kill -9 of the launch would leave them training on unseen unless they stop with it.

Run as: python -m lorastack.finetune.torchrun [torchrun arguments] -m lorastack.cli train ...
"""

from __future__ import annotations

import os
import sys

from lorastack.finetune.distributed import LAUNCHER_PID


def main() -> None:
    from torch.distributed.elastic.multiprocessing.api import SignalException
    from torch.distributed.run import main as torchrun

    os.environ[LAUNCHER_PID] = str(os.getpid())
    try:
        torchrun()
    except SignalException as exc:  # torchrun has already stopped its processes and said so in one line
        sys.exit(128 + int(exc.sigval))
    except KeyboardInterrupt:
        sys.exit(130)


if __name__ == "__main__":
    main()
