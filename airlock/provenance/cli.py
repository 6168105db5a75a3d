"""`airlock provenance ...`: verify and show the signed provenance record of a generated image."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from airlock.clitools import console, err, fail
from airlock.errors import AirlockError
from airlock.keys import Verifier, load_verifier
from airlock.provenance.embed import extract
from airlock.provenance.verify import verify as verify_image

app = typer.Typer(
    help="Signed provenance records of generated images (embedded or <image>.provenance.json).",
    no_args_is_help=True,
    epilog="Example: airlock provenance verify out.png --trust /etc/airlock/keys/signing.pub",
)

ImageArgument = typer.Argument(..., exists=True, dir_okay=False, help="A PNG, JPEG or WebP image.")


def read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        fail(f"cannot read {path}: {exc.strerror or exc}", 2)


def trusted_keys(paths: list[Path] | None) -> list[Verifier]:
    try:
        return [load_verifier(p) for p in paths] if paths else [load_verifier()]
    except AirlockError as exc:
        fail(exc, 2)  # no key to check with: a setup error, not a failed check


@app.command(
    epilog="Example: airlock provenance verify out.jpeg --trust site-a.pub --trust site-b.pub "
    "--sidecar out.jpeg.provenance.json"
)
def verify(
    image: Path = ImageArgument,
    trust: list[Path] | None = typer.Option(
        None,
        "--trust",
        metavar="PUBKEY",
        help="Public key a record may be signed with (repeatable; default: signing.pub in "
        "$AIRLOCK_KEYS_DIR or /etc/airlock/keys).",
    ),
    sidecar: Path | None = typer.Option(
        None,
        "--sidecar",
        metavar="FILE",
        exists=True,
        dir_okay=False,
        help="A <image>.provenance.json to check as well.",
    ),
    as_json: bool = typer.Option(False, "--json", help="Print the verdict as JSON."),
) -> None:
    """Check the signature, the signer and the pixels. Exit 0 valid, 1 invalid."""
    verdict = verify_image(read(image), trusted_keys(trust), sidecar)
    if as_json:
        typer.echo(json.dumps(verdict.to_dict(), indent=2, sort_keys=True, ensure_ascii=False))
    elif verdict.valid:
        record = verdict.record or {}
        model = record.get("model") or {}
        console.print(
            f"[green]valid[/green]: {image} signed by {verdict.signer} on {record.get('created')} "
            f"(tenant {record.get('tenant')}, model {model.get('name')} {model.get('version')})",
            highlight=False,
            soft_wrap=True,
        )
    else:
        console.print(f"[red]invalid[/red]: {image}", highlight=False, soft_wrap=True)
        for reason in verdict.reasons:
            console.print(f"  - {reason}", highlight=False, soft_wrap=True)
    raise typer.Exit(0 if verdict.valid else 1)


@app.command(epilog="Example: airlock provenance show out.png | jq .record.parameters")
def show(image: Path = ImageArgument) -> None:
    """Print the embedded record (record and signature) as JSON, without verifying it."""
    try:
        signed = extract(read(image))
    except AirlockError as exc:
        fail(exc)
    if signed is None:
        fail(f"no provenance record embedded in {image} (is there an {image.name}.provenance.json?)")
    typer.echo(json.dumps(signed, indent=2, sort_keys=True, ensure_ascii=False))
    err.print("not verified: check it with `airlock provenance verify`", highlight=False)
