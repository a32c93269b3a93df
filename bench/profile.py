"""Where a worker's CPU goes: py-spy attached to running processes, summed by function.

Used by bench.outbound and bench.botrt for one extra pass after their measured rounds
(py-spy's own sampling takes CPU on a two-core machine, so no measured round is
profiled). ``py-spy record --gil`` samples only the thread holding the GIL, so the
shares are shares of the process's Python CPU time. py-spy is a development tool
(``pip install py-spy``); without it the pass is skipped and the results say so.
"""

import re
import shutil
import signal
import subprocess
import sys
from collections import Counter
from pathlib import Path

RATE = 200  # samples per second
LINE = re.compile(r":\d+\)")


def available():
    """The py-spy executable (beside this Python, else on PATH), or None."""
    here = Path(sys.executable).parent / "py-spy"
    return str(here) if here.exists() else shutil.which("py-spy")


class Spy:
    """``with Spy(pids, folder) as spy:`` samples the processes while the block runs;
    ``spy.summary()`` afterwards."""

    def __init__(self, pids, folder, name):
        self.pids = list(pids)
        self.files = [Path(folder) / f"{name}-{pid}.txt" for pid in self.pids]
        self.processes = []

    def __enter__(self):
        binary = available()
        for pid, path in zip(self.pids, self.files, strict=True):
            command = [binary, "record", "--pid", str(pid), "--rate", str(RATE), "--gil"]
            command += ["--format", "raw", "--nonblocking", "-o", str(path)]
            self.processes.append(
                subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            )
        return self

    def __exit__(self, *exc_info):
        for process in self.processes:
            process.send_signal(signal.SIGINT)  # py-spy writes its file and exits
        for process in self.processes:
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()

    def summary(self, *, focus="rchat/", top=25):
        """{"samples", "inclusive": [[share, function]], "self": [[share, function]]}:
        the functions under ``focus`` (a path part) with the share of samples in which
        each was on the stack, and every function's share of samples it was running."""
        inclusive, own, total = Counter(), Counter(), 0
        for path in self.files:
            if not path.exists():
                continue
            for line in path.read_text(errors="replace").splitlines():
                stack, _, count = line.rpartition(" ")
                if not stack or not count.isdigit():
                    continue
                count = int(count)
                total += count
                frames = [LINE.sub(")", frame) for frame in stack.split(";")]
                for frame in set(frames):
                    inclusive[frame] += count
                own[frames[-1]] += count
        if not total:
            return {"samples": 0, "inclusive": [], "self": []}

        def share(n):
            return round(100 * n / total, 1)

        return {
            "samples": total,
            "inclusive": [
                [share(n), frame] for frame, n in inclusive.most_common() if focus in frame
            ][:top],
            "self": [[share(n), frame] for frame, n in own.most_common(top)],
        }


def report(summary, title):
    """The summary as text, for bench/results/*_profile.txt."""
    lines = [title, "", f"{summary['samples']} samples (py-spy --gil, {RATE} per second)", ""]
    lines.append("On the stack (% of samples), rchat's functions:")
    lines += [f"  {share:5.1f}%  {frame}" for share, frame in summary["inclusive"]]
    lines += ["", "Running (% of samples), every function:"]
    lines += [f"  {share:5.1f}%  {frame}" for share, frame in summary["self"]]
    return "\n".join(lines) + "\n"
