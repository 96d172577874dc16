"""The intake service: verified alert webhooks in, deduplicated playbook runs out; Slack clicks in,
approval votes out. See `app.create_app` and `server.serve`.

Nothing is imported here: importing one intake module (the store, by the shared-state backends)
must not pull in the whole app.
"""
