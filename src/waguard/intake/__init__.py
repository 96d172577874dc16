"""The intake service: verified alert webhooks in, deduplicated playbook runs out; Slack clicks in,
approval votes out. See `app.create_app` and `service.serve`."""

from waguard.intake.app import create_app
from waguard.intake.starter import PrefectRunStarter, RecordingStarter, RunStarter

__all__ = ["PrefectRunStarter", "RecordingStarter", "RunStarter", "create_app"]
