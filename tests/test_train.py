"""The loop's terminal output: a bar of at most 80 columns on a terminal, a few plain lines in a
redirected log (never tqdm frames), and group lines that fit 80 columns."""

import io
import pathlib
import sys

from fedjax_deep import cli, train

TINY = str(pathlib.Path(__file__).parents[1] / "configs" / "digits_tiny.py")


class _Terminal(io.StringIO):
    def isatty(self):
        return True


def test_the_bar_fits_80_columns_and_always_shows_percentage_count_and_time(monkeypatch):
    out = _Terminal()
    monkeypatch.setattr(sys, "stderr", out)
    bar = train._Progress("centralized x24 and a name far too long to show", 1200, initial=100)
    bar.bar.mininterval = 0  # every update drawn
    for n in range(101, 1201, 97):
        bar.update(n, train._postfix({"train/loss": 12.3456, "eval/accuracy": 0.1}))
    bar.update(1200, "loss=12.346 acc=0.100")
    bar.close()
    frames = [f for f in out.getvalue().replace("\n", "\r").split("\r") if f.strip()]
    assert len(frames) > 5
    for frame in frames:
        assert len(frame) <= 80, frame
        assert "%|" in frame and "/1200 [" in frame and "<" in frame, frame
    assert frames[-1].startswith("centralized x24  100%|") and "loss=12.346" in frames[-1]


def test_a_log_gets_a_plain_line_per_tenth_not_frames(monkeypatch):
    out = io.StringIO()  # not a terminal
    monkeypatch.setattr(sys, "stderr", out)
    bar = train._Progress("fl", 350)
    for n in range(1, 351):
        bar.update(n, "loss=0.100 acc=0.900")
    bar.close()
    lines = out.getvalue().splitlines()
    assert len(lines) == 10 and "\r" not in out.getvalue()
    assert lines[0].startswith("fl: round 35/350 (10%), ") and lines[-1].startswith(
        "fl: round 350/350 (100%), "
    )
    assert lines[-1].endswith("left, loss=0.100 acc=0.900")


def test_a_redirected_sweep_log_is_a_few_short_lines(tmp_path, capsys):
    """A sweep whose point names run past 80 characters, 20 rounds, stderr not a terminal: group
    lines cut to 80 columns, and about one progress line per tenth of the run."""
    fields = ("client_opt.learning_rate", "client_opt.weight_decay", "server_opt.learning_rate",
              "client_opt.momentum", "seed")  # fmt: skip
    values = ((0.05, 0.0005, 1.0, 0.9, 0), (0.02, 0.001, 0.7, 0.5, 1))
    code = cli.main(["train", "--config", TINY, "--workdir", str(tmp_path / "w"),
                     "--config.num_rounds=20", "--config.compile_cache=off",
                     f"--config.sweep=(({fields!r}, {values!r}),)"])  # fmt: skip
    assert code == 0
    err = capsys.readouterr().err
    lines = err.splitlines()
    assert "\r" not in err and len(err) < 3000, err
    assert all(len(line) <= 80 for line in lines), err
    group = next(line for line in lines if line.startswith("[1/1] "))
    assert group.startswith("[1/1] 2 points: learning_rate-0.05_weight_decay-") and group.endswith(
        "... (+1)"
    )
    progress = [line for line in lines if line.startswith("fl x2: round ")]
    assert 8 <= len(progress) <= 11 and progress[-1].startswith("fl x2: round 20/20 (100%)")
