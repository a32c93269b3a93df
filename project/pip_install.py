"""`pip install` for the Makefile: progress and a one-line result, pip's own output in a log.

    python project/pip_install.py --log var/pip.log -r requirements/dev.txt

pip's output (every package it looks at, its warnings, setuptools' notes on editable
installs) is appended to the log. On the screen: a line that counts the packages as pip
goes (on a terminal), then one line with what was installed. If pip fails, its last lines
and the log's path, and pip's exit status.

Run by path, with the standard library only: it runs before anything else is installed
(project/__init__.py imports Celery). Not translated for the same reason: Django is not
there yet.
"""

import argparse
import re
import subprocess
import sys
from pathlib import Path

#: How many of pip's last lines are shown when it fails.
TAIL = 15
#: pip's lines that name the next package it handles.
PACKAGE = re.compile(r"^(?:Collecting|Processing|Requirement already satisfied:|Obtaining) (\S+)")


def install(pip_arguments, log, out=sys.stdout):
    """Run ``pip install *pip_arguments``; return pip's exit status."""
    log.parent.mkdir(parents=True, exist_ok=True)
    command = [
        *(sys.executable, "-m", "pip", "install"),
        *("--disable-pip-version-check", "--progress-bar", "off"),
        *pip_arguments,
    ]
    live = out.isatty()
    seen, installed, satisfied = 0, [], 0
    with open(log, "a", encoding="utf-8") as record:
        record.write(f"$ {' '.join(command)}\n")
        record.flush()
        pip = subprocess.Popen(  # noqa: S603 - pip with the Makefile's arguments
            command,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            text=True,
            encoding="utf-8",
            errors="replace",
        )
        tail = []
        for line in pip.stdout:
            record.write(line)
            line = line.rstrip("\n")
            tail = [*tail[-(TAIL - 1) :], line]
            if match := PACKAGE.match(line):
                seen += 1
                satisfied += line.startswith("Requirement already satisfied")
                if live:
                    out.write(f"\r\033[K    {seen} package(s) looked at: {match[1][:50]}")
                    out.flush()
            elif line.startswith("Successfully installed "):
                installed = line.split()[2:]
        status = pip.wait()
    if live:
        out.write("\r\033[K")
    if status:
        out.write(f"    pip failed (exit status {status}); its last lines:\n")
        out.writelines(f"      {line}\n" for line in tail)
        out.write(f"    The whole of pip's output: {log}\n")
    else:
        out.write(
            f"    {len(installed)} package(s) installed, {satisfied} already there "
            f"(pip's output: {log})\n"
        )
    out.flush()
    return status


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--log", type=Path, required=True, help="Append pip's output here.")
    # Everything else is pip's, in its order: `-r requirements/dev.txt`, `--no-deps -e .`.
    args, pip_arguments = parser.parse_known_args(argv)
    if not pip_arguments:
        parser.error("say what to install, as after `pip install`")
    return install(pip_arguments, args.log)


if __name__ == "__main__":
    sys.exit(main())
