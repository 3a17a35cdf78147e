"""Stage logs: output and errors in the log file, a short status line on the terminal."""

from __future__ import annotations

import pytest

from spacemoc.logs import StatusLine, log_to


def test_long_stages_show_a_status_line_on_the_terminal_and_progress_in_the_log(tmp_path, capfd):
    log = tmp_path / "train.log"
    with log_to(log):
        print("a progress bar")
        status = StatusLine("train pong seed 0", 3, every_s=3600)
        for done in (1, 2, 3):
            status.update(done, loss="0.5")
    terminal = capfd.readouterr().err.splitlines()
    assert len(terminal) == 2  # the first step and the last; the interval keeps step 2 quiet
    assert "train pong seed 0: step 1/3 (33 %), loss 0.5" in terminal[0]
    assert "step 3/3 (100 %)" in terminal[1] and "ETA 0m00s" in terminal[1]
    assert "a progress bar" in log.read_text() and "step 1/3" not in log.read_text()


def test_without_a_log_the_status_line_stays_quiet(capfd):
    StatusLine("train", 2, every_s=0).update(1)
    assert capfd.readouterr().err == ""


def test_an_error_ends_up_in_the_log(tmp_path):
    log = tmp_path / "job.log"
    with pytest.raises(KeyError), log_to(log):
        raise KeyError("unknown key 'lr'")
    assert "KeyError: \"unknown key 'lr'\"" in log.read_text()
