"""The root of waguard's error tree.

Every room (meta, vault, slack) derives its errors from `WaguardError`. Retry decisions are made by
type: an error that is worth retrying also derives from `Retryable`. Messages never carry a secret
value; at most they name a Vault path or an object id.
"""


class WaguardError(Exception):
    """Base class of every error waguard raises on purpose."""


class Retryable(WaguardError):
    """Mixin: the operation may succeed if tried again later.

    `retry_after` is the number of seconds the remote side asked us to wait, when it said so.
    """

    retry_after: float | None = None


class ConfigError(WaguardError):
    """A setting is missing or invalid; the message names the setting."""


def only_retryable(task: object, task_run: object, state: object) -> bool:
    """Prefect `retry_condition_fn`: retry a task only when it failed with a `Retryable` error."""
    try:
        state.result()  # type: ignore[attr-defined]
    except Retryable:
        return True
    except Exception:
        return False
    return False
