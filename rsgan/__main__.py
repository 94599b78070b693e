"""``python -m rsgan``: the ``rsgan`` command, for environments without its script on PATH
(a scheduler calling ``sys.executable -m rsgan ...``)."""

from rsgan.cli.main import cli

if __name__ == "__main__":
    cli(prog_name="rsgan")
