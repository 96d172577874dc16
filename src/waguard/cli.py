"""The `waguard` command: `waguard up | drill | intake | worker | doctor | incident | config | version`.

Settings are read once here and passed down. Every failure a responder can fix (a bad setting, a
port in use, a service that would not start) ends with one clear line and exit status 2, never a
traceback.
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
from collections.abc import Sequence
from pathlib import Path

from waguard import __version__
from waguard.errors import WaguardError
from waguard.settings import Settings, load_settings


def _cmd_up(settings: Settings, args: argparse.Namespace) -> int:
    from waguard.local.stack import LocalStack

    if args.profile == "scaled":  # Prefect on PostgreSQL + Redis, replicas behind HAProxy (local/scaled.py)
        from waguard.local.scaled import ScaledStack

        stack: LocalStack = ScaledStack(settings)
    else:
        stack = LocalStack(settings)
    stopping = threading.Event()
    # SIGTERM stops the stack as cleanly as Ctrl-C does.
    signal.signal(signal.SIGTERM, lambda *_: stopping.set())
    try:
        urls = stack.start()
        print("\nwaguard local stack is up:")
        for label, url in urls.lines():
            print(f"  {label:<22} {url}")
        print(f"  {'Vault token file':<22} {settings.vault.token_file}")
        print("\nexport PREFECT_API_URL=" + urls.prefect_api)
        print("Press Ctrl-C to stop.", flush=True)
        while not stopping.wait(0.5):
            pass
    except KeyboardInterrupt:
        pass
    finally:
        print("\nstopping the local stack...", flush=True)
        stack.stop()
        print("stopped.")
    return 0


def _cmd_drill(settings: Settings, args: argparse.Namespace) -> int:
    from waguard.drills.command import drill
    from waguard.local.processes import interrupt_on_sigterm

    interrupt_on_sigterm()  # the drill's `finally` stops the stack it started
    return drill(settings, scenarios=args.scenarios, everything=args.all, faults=args.fault or [],
                 report_path=args.report, human=args.responder == "human", delay_s=args.delay,
                 require_objectives=args.require_objectives)


def _cmd_intake(settings: Settings, args: argparse.Namespace) -> int:
    from waguard.intake.server import serve

    serve(settings, args.host, args.port, say=lambda line: print(line, flush=True), log_file=args.log_file)
    return 0


def _cmd_worker(settings: Settings, args: argparse.Namespace) -> int:
    import os

    os.environ.setdefault("PREFECT_API_URL", settings.prefect.api_url)  # before Prefect reads its settings
    from waguard.launcher.launcher import run_worker

    return run_worker(settings, project=args.project, spec=args.spec)


def _cmd_doctor(settings: Settings, args: argparse.Namespace) -> int:
    from waguard.local.identities import identity_dir
    from waguard.operate.doctor import diagnose, render

    results = diagnose(settings, identities=args.identities or identity_dir(settings), project=args.project)
    print(render(results, as_json=args.json))
    return 0 if all(c.ok for c in results) else 1


def _cmd_incident(settings: Settings, args: argparse.Namespace) -> int:
    import asyncio

    from waguard.operate import incidents as inc

    if args.action == "list":
        print(inc.render_list(inc.list_incidents(settings), as_json=args.json))
    elif args.action == "show":
        print(inc.render_show(*inc.show_incident(settings, args.incident_id), as_json=args.json))
    else:
        report = asyncio.run(inc.cancel_incident(settings, args.incident_id, wait_s=args.wait))
        print(inc.render_cancel(report, as_json=args.json))
    return 0


def _cmd_config(settings: Settings, args: argparse.Namespace) -> int:
    # Secrets are SecretStr, so a dump shows '**********' for any that are set.
    print(settings.model_dump_json(indent=2))
    return 0


def _cmd_version(settings: Settings, args: argparse.Namespace) -> int:
    print(f"waguard {__version__}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="waguard", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    up = sub.add_parser("up", help="start the local stack on loopback and wait for Ctrl-C")
    up.add_argument("--profile", choices=["embedded", "scaled"], default="embedded",
                    help="embedded: one Prefect server on SQLite; scaled: PostgreSQL, Redis, two API "
                         "replicas, a services process, two intakes and two launchers behind HAProxy")
    up.set_defaults(func=_cmd_up)
    drill = sub.add_parser("drill", help="run game-day drills on the local stack")
    drill.add_argument("scenarios", nargs="*", help="scenario names (files in runbooks/drills/)")
    drill.add_argument("--all", action="store_true", help="every scenario")
    drill.add_argument("--fault", action="append", metavar="NAME",
                       help="inject a fault into every scenario: graph-429, graph-5xx, graph-slow, "
                            "vault-down, slack-429, kill-flow (repeatable)")
    drill.add_argument("--report", type=Path, default=Path("drill-report.json"), help="JSON report path")
    drill.add_argument("--responder", choices=["auto", "human"], default="auto",
                       help="auto: the stand-in responder approves in Slack; human: wait for a person")
    drill.add_argument(
        "--delay", type=float, default=1.0, help="seconds the stand-in responder takes to react"
    )
    drill.add_argument("--require-objectives", action="store_true",
                       help="fail the exit status when a scenario misses its time objectives, too")
    drill.set_defaults(func=_cmd_drill)
    intake = sub.add_parser("intake", help="run the intake service: alert webhooks in, playbook runs out")
    intake.add_argument("--host", help="address to bind (default: stack.host)")
    intake.add_argument("--port", type=int, help="port to bind (default: stack.intake_port)")
    intake.add_argument("--log-file", type=Path, help="write the log here, rotated by size (default: stderr)")
    intake.set_defaults(func=_cmd_intake)
    worker = sub.add_parser(
        "worker", help="run the launcher: execute playbook runs, each in a forked process"
    )
    worker.add_argument("--project", type=Path, default=Path.cwd(), help="project directory (flows/, tasks/)")
    worker.add_argument("--spec", type=Path, help="deployments file (default: <project>/prefect.yaml)")
    worker.set_defaults(func=_cmd_worker)
    doctor = sub.add_parser("doctor", help="read-only preflight: every check passes, or says its fix")
    doctor.add_argument("--json", action="store_true", help="JSON for monitoring")
    doctor.add_argument("--identities", type=Path,
                        help="directory of <identity>.role-id/.secret-id (default: the local stack's)")
    doctor.add_argument("--project", type=Path, default=Path.cwd(), help="project directory (prefect.yaml)")
    doctor.set_defaults(func=_cmd_doctor)
    incident = sub.add_parser("incident", help="list incidents, show one's timeline, or cancel one")
    actions = incident.add_subparsers(dest="action", required=True)
    actions.add_parser("list", help="every incident, newest first, with its live runs")
    actions.add_parser("show", help="an incident's status, runs and timeline").add_argument("incident_id")
    cancel = actions.add_parser("cancel", help="cancel its runs and close it everywhere (Prefect, Slack)")
    cancel.add_argument("incident_id")
    cancel.add_argument("--wait", type=float, default=120.0, help="seconds to wait for each run to close")
    for action in actions.choices.values():
        action.add_argument("--json", action="store_true", help="JSON instead of a table")
    incident.set_defaults(func=_cmd_incident)
    sub.add_parser("config", help="print the effective settings (secrets masked)").set_defaults(
        func=_cmd_config
    )
    sub.add_parser("version", help="print the version").set_defaults(func=_cmd_version)
    from waguard.evidence.commands import add_parser as add_evidence_commands

    add_evidence_commands(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    # httpx logs every request URL at INFO; Graph URLs carry appsecret_proof and debug_token input tokens.
    for noisy in ("httpx", "httpcore", "hvac", "urllib3", "slack_sdk"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    try:
        settings = load_settings()
        if args.command in ("up", "drill"):  # the console shows progress; the log is a file
            from waguard.local.console import logs_to_file

            log = logs_to_file(settings.stack.home / "logs" / f"waguard-{args.command}.log")
            print(f"log: {log}", flush=True)
        return int(args.func(settings, args))
    except WaguardError as err:
        print(f"waguard: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
