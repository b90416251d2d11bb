"""`flask signatures ...`: write a signed record's manifest, check a manifest file against the database, and write the
record lifecycles' page (docs/lifecycles.md) from their declarations.

The manifest commands only read: a manifest is an export, and verifying one must never change what it is checked
against.
"""

from __future__ import annotations

import sys
from pathlib import Path

import click
from flask.cli import AppGroup

from signatures import manifest
from signatures.services import record_for

signatures_cli = AppGroup("signatures", help="Electronic signatures.")


@signatures_cli.command("verify-manifest")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
def verify_manifest(file: Path) -> None:
    """Check FILE against manifest.xsd and the database; exit 1 listing each problem."""
    size = file.stat().st_size
    if size > manifest.MAX_MANIFEST_BYTES:
        # refuse before reading: the limit exists so that a huge file is never loaded
        click.echo(f"FAILED: manifest refused: it is larger than {manifest.MAX_MANIFEST_BYTES // (1024 * 1024)} MB "
                   f"({size} bytes)", err=True)
        sys.exit(1)
    result = manifest.check_manifest(file.read_bytes())
    if not result.ok:
        for problem in result.problems:
            click.echo(f"FAILED: {problem}", err=True)
        click.echo(f"manifest invalid: {len(result.problems)} problem(s)", err=True)
        sys.exit(1)
    click.echo(f"manifest valid: {result.signatures} signatures checked")


@signatures_cli.command("manifest")
@click.argument("record_type")
@click.argument("record_id", type=int)
@click.option("-o", "--output", "output", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Write the manifest to this file (default: standard output).")
def write_manifest(record_type: str, record_id: int, output: Path | None) -> None:
    """Write the signature manifest of RECORD_TYPE RECORD_ID (e.g. qms_document_revision 12)."""
    record = record_for(record_type, record_id)
    if record is None:
        raise click.ClickException(f"no signable record {record_type} {record_id}")
    data = manifest.build_manifest(record)
    if output is None:
        click.echo(data.decode("utf-8"), nl=False)
    else:
        output.write_bytes(data)
        click.echo(f"wrote the signature manifest of {record.signable_title()} to {output}")


@signatures_cli.command("lifecycles")
@click.option("--write", "write", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Write the page to this file (e.g. docs/lifecycles.md) instead of standard output.")
@click.option("--check", "check", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Exit 1 when this file differs from what the declarations give.")
def lifecycles(write: Path | None, check: Path | None) -> None:
    """The record lifecycles as declared: a state diagram (Mermaid) and a table of transitions per record type."""
    from signatures.lifecycle import markdown

    text = markdown()
    if check is not None:
        if not check.exists() or check.read_text(encoding="utf-8") != text:
            click.echo(f"{check} is out of date: run flask signatures lifecycles --write {check}", err=True)
            sys.exit(1)
        click.echo(f"{check} matches the declarations")
    elif write is not None:
        write.write_text(text, encoding="utf-8")
        click.echo(f"wrote the lifecycles of {text.count(chr(10) + '## ')} record types to {write}")
    else:
        click.echo(text, nl=False)
