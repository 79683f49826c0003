"""``lorastack jobs list|show|cancel|events``: the running server's fine-tuning jobs (the same API the ``openai``
client uses: ``client.fine_tuning.jobs``)."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime
from typing import Any

import typer
from rich.console import Console
from rich.markup import escape

from lorastack.errors import ServerError
from lorastack.report import folding_table
from lorastack.serve.client import ServerClient, _raise_for
from lorastack.serve.jobs.store import FINAL
from lorastack.serve.state import current_server

console = Console()
jobs = typer.Typer(help="Fine-tuning jobs of the running server (created through its OpenAI API).",
                   no_args_is_help=True)  # fmt: skip


class JobsClient(ServerClient):
    """The front door's fine-tuning routes, with the admin key from the environment."""

    def call(self, method: str, path: str, action: str, **params: Any) -> dict:
        response = self._request(method, path, params={k: v for k, v in params.items() if v is not None})
        _raise_for(response, action)
        return response.json()


def _client() -> JobsClient:
    server = current_server()
    if server is None:
        raise ServerError("No lorastack server is running.", "Start it with: lorastack serve")
    return JobsClient(server.url)


def _when(seconds: int | None) -> str:
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%d %H:%M:%S") if seconds else "-"


@jobs.command("list")
def list_(
    limit: int = typer.Option(20, min=1, max=100, help="Jobs to show, newest first."),
    after: str = typer.Option(None, help="Show the jobs older than this job id (the next page)."),
) -> None:
    """List fine-tuning jobs, newest first."""
    page = _client().call("GET", "/v1/fine_tuning/jobs", "list jobs", limit=limit, after=after)
    if not page["data"]:
        console.print("No fine-tuning jobs.")
        return
    table = folding_table("id", "status", "created", "training file", "fine-tuned model", "tokens")
    for job in page["data"]:
        table.add_row(job["id"], job["status"], _when(job["created_at"]), job["training_file"],
                      job["fine_tuned_model"] or "-", str(job["trained_tokens"] or "-"))  # fmt: skip
    console.print(table)
    if page["has_more"]:
        console.print(f"More: lorastack jobs list --after {page['last_id']}")


@jobs.command()
def show(
    job_id: str = typer.Argument(..., help="A job id (ftjob-...)."),
    as_json: bool = typer.Option(False, "--json", help="Print the job object as JSON."),
) -> None:
    """Show one job: status, hyperparameters, the served model or the error."""
    job = _client().call("GET", f"/v1/fine_tuning/jobs/{job_id}", f"show {job_id}")
    if as_json:
        typer.echo(json.dumps(job, indent=2))
        return
    hyper = job["hyperparameters"]
    lines = [
        f"[bold]{job['id']}[/] {job['status']}  (model {escape(job['model'])}, file {job['training_file']})",
        f"created {_when(job['created_at'])}, finished {_when(job['finished_at'])}",
        "hyperparameters: " + ", ".join(f"{k}={v}" for k, v in hyper.items()) + f", seed={job['seed']}",
    ]
    if job["fine_tuned_model"]:
        lines.append(f"fine-tuned model: [bold]{escape(job['fine_tuned_model'])}[/] ({job['trained_tokens']} tokens)")
    if job["error"]:
        lines.append(f"[red]error[/] {job['error']['code']}: {escape(job['error']['message'])}")
    for line in lines:
        console.print(line, soft_wrap=True, highlight=False)


@jobs.command()
def cancel(job_id: str = typer.Argument(..., help="A job id (ftjob-...).")) -> None:
    """Cancel a job: a queued one never starts, a running one stops; neither leaves an adapter."""
    job = _client().call("POST", f"/v1/fine_tuning/jobs/{job_id}/cancel", f"cancel {job_id}")
    console.print(f"{job['id']} {job['status']}.")


@jobs.command()
def events(
    job_id: str = typer.Argument(..., help="A job id (ftjob-...)."),
    limit: int = typer.Option(100, min=1, max=100, help="Latest events to show."),
    follow: bool = typer.Option(False, "--follow", "-f", help="Keep printing new events until the job ends."),
) -> None:
    """Print a job's events (oldest first): its steps and losses, checkpoints, the result."""
    client = _client()
    seen: set[str] = set()
    while True:
        done = not follow or client.call("GET", f"/v1/fine_tuning/jobs/{job_id}", f"show {job_id}")["status"] in FINAL
        page = client.call("GET", f"/v1/fine_tuning/jobs/{job_id}/events", f"read events of {job_id}", limit=limit)
        for event in reversed(page["data"]):
            if event["id"] not in seen:
                seen.add(event["id"])
                style = "red" if event["level"] == "error" else ""
                console.print(f"{_when(event['created_at'])}  [{style}]{escape(event['message'])}[/]" if style else
                              f"{_when(event['created_at'])}  {escape(event['message'])}", soft_wrap=True)  # fmt: skip
        if done:
            return
        time.sleep(2)


def add_commands(app: typer.Typer) -> None:
    app.add_typer(jobs, name="jobs")
