"""`waguard up` and `waguard drill` print progress lines; every log record goes to a file instead.

Left alone, the console would also carry our own INFO lines (`vault wrote secret ...`), Prefect's
console handler (set up when prefect is imported), and tracebacks uvicorn logs when a simulator's
client disconnects: a responder running a drill needs the progress, and the log belongs under the
stack home with the other services' logs.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path

FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def _prints_to_console(handler: logging.Handler) -> bool:
    stream = getattr(handler, "stream", None)
    return isinstance(handler, logging.StreamHandler) and not isinstance(handler, logging.FileHandler) \
        and stream in (sys.stderr, sys.stdout, sys.__stderr__, sys.__stdout__)


def logs_to_file(path: Path) -> Path:
    """Send every log record of this process to `path`, and none to the console; returns `path`.

    Prefect configures logging when it is first imported (a console handler on the root logger and on
    uvicorn's), so it is imported here first: configuring after it means ours is what stays.
    """
    import prefect  # noqa: F401  - for its logging set-up, which must come before ours

    path.parent.mkdir(parents=True, exist_ok=True)
    to_file = logging.FileHandler(path, encoding="utf-8")
    to_file.setFormatter(logging.Formatter(FORMAT))
    loggers = [logging.getLogger()] + [
        logging.getLogger(name) for name in list(logging.root.manager.loggerDict)
    ]
    for logger in loggers:
        console = [h for h in logger.handlers if _prints_to_console(h)]
        for handler in console:
            logger.removeHandler(handler)
        if console and not logger.propagate:  # it printed on its own: now it writes the file on its own
            logger.addHandler(to_file)
    root = logging.getLogger()
    root.addHandler(to_file)
    root.setLevel(logging.INFO)
    logging.captureWarnings(True)  # Python warnings too: they are log lines, not progress
    return path
