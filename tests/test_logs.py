"""A job's output, TensorFlow's C++ start-up messages included, goes to its log, not the
terminal; a job's one-line error reaches both."""

import re
import subprocess
import sys
import textwrap

import h5py
import pytest
from conftest import REPO, run_snakemake

# TensorFlow's C++ log lines: severity, then MMDD, as in "E0000 00:00:1795933745.255236 ...".
TF_CPP_LINE = re.compile(r"^[IWEF]\d{4} \d\d:\d\d:\d", re.MULTILINE)


def run_job(tmp_path, body):
    """Run `body` inside job_log in a fresh Python; (stdout, stderr, returncode, log text)."""
    log = tmp_path / "logs" / "job.log"
    code = "from smallcnn.logs import job_log\n"
    code += f"with job_log({str(log)!r}):\n" + textwrap.indent(textwrap.dedent(body), "    ")
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=300
    )
    return result.stdout, result.stderr, result.returncode, log.read_text()


def test_tensorflow_start_up_and_everything_printed_go_to_the_log_only(tmp_path):
    stdout, stderr, code, log = run_job(
        tmp_path,
        """
        import logging, os, warnings
        import tensorflow as tf
        print("sum", float(tf.reduce_sum(tf.ones((3, 3)))))
        logging.getLogger("job").info("a log line")
        warnings.warn("a warning")
        os.write(2, b"straight to descriptor 2\\n")
        """,
    )
    assert code == 0, stderr
    assert (stdout, stderr) == ("", "")
    assert TF_CPP_LINE.search(log), log
    for line in ("sum 9.0", "INFO job: a log line", "UserWarning: a warning", "descriptor 2"):
        assert line in log


def test_a_user_error_is_one_line_on_the_terminal_and_in_the_log(tmp_path):
    stdout, stderr, code, log = run_job(
        tmp_path,
        """
        import tensorflow
        from smallcnn.errors import UserError
        raise UserError("no images in photos/: add some")
        """,
    )
    assert code == 1
    assert (stdout, stderr) == ("", "error: no images in photos/: add some\n")
    assert TF_CPP_LINE.search(log) and log.endswith("error: no images in photos/: add some\n")


def test_an_unexpected_error_keeps_its_traceback_on_both(tmp_path):
    stdout, stderr, code, log = run_job(tmp_path, 'raise RuntimeError("a bug")\n')
    assert code == 1
    for text in (stderr, log):
        assert "Traceback" in text and "RuntimeError: a bug" in text


def test_output_after_the_block_is_on_the_terminal_again(tmp_path):
    log = tmp_path / "job.log"
    code = textwrap.dedent(
        f"""
        import os
        from smallcnn.logs import job_log
        with job_log({str(log)!r}):
            print("inside")
        print("outside")
        os.write(2, b"outside on 2\\n")
        """
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO)
    assert (result.stdout, result.stderr) == ("outside\n", "outside on 2\n")
    assert log.read_text() == "inside\n"


@pytest.mark.slow
def test_a_features_job_keeps_the_terminal_clean_and_runs_on_its_threads(tmp_path):
    target = "results/features/vgg16/none/test.h5"
    result = run_snakemake(
        tmp_path,
        [target],
        configfiles=[REPO / "config" / "demo.yaml"],
        args=["--set-threads", "extract_features=1"],
    )
    terminal = result.stdout + result.stderr
    assert not TF_CPP_LINE.search(terminal), terminal
    assert "oneDNN" not in terminal and "cuInit" not in terminal and "absl" not in terminal
    # Snakemake's own progress is still there.
    assert "rule extract_features:" in terminal and "steps (100%) done" in terminal
    log = tmp_path / "logs" / "features" / "vgg16" / "none" / "test.log"
    assert TF_CPP_LINE.search(log.read_text())
    with h5py.File(tmp_path / target) as h5:
        assert (h5.attrs["intra_op_threads"], h5.attrs["inter_op_threads"]) == (1, 1)


def test_no_secret_reaches_the_log_or_the_terminal_whatever_writes_it(tmp_path):
    stdout, stderr, code, log = run_job(
        tmp_path,
        """
        import logging, os, warnings
        logging.getLogger("job").info("fetching http://user:SECRET@host/a b.zip?t=SECRET")
        print('kaggle.json: {"username": "me", "key": "SECRET"}', flush=True)
        warnings.warn("Authorization: Bearer SECRET")
        os.write(2, b"KAGGLE_KEY=SECRET from C\\n")
        import requests
        requests.get("https://user:SECRET@example.com:99999/a.zip?token=SECRET")
        """,
    )
    assert code == 1
    assert "SECRET" not in stdout + stderr + log
    assert "InvalidURL: Failed to parse: https://***@example.com:99999/a.zip?***" in stderr
    for line in ("INFO job: fetching http://***@host/a b.zip?***", '"key": "***"', "Bearer ***"):
        assert line in log
    assert stderr in log, "the terminal got another traceback than the log"


def test_a_user_errors_line_on_the_terminal_is_redacted(tmp_path):
    stdout, stderr, code, log = run_job(
        tmp_path,
        """
        from smallcnn.errors import UserError
        raise UserError("cannot reach //user:SECRET@host/a.zip;sig=SECRET")
        """,
    )
    assert code == 1
    assert (stdout, stderr) == ("", "error: cannot reach //***@host/a.zip;***\n")
    assert log == stderr


def test_a_crashing_job_still_leaves_its_last_lines_in_the_log(tmp_path):
    stdout, stderr, code, log = run_job(
        tmp_path,
        """
        import os
        print("epoch 3 of 30", flush=True)
        os.write(2, b"F0000 check failed: token=SECRET\\n")
        os.abort()
        """,
    )
    assert code < 0 and (stdout, stderr) == ("", "")
    assert log == "epoch 3 of 30\nF0000 check failed: token=***\n"


def run_held(body):
    """Run `body` inside native_output_held in a fresh Python; (stdout, stderr, returncode)."""
    code = "import os, sys\nfrom smallcnn.logs import native_output_held\n"
    code += "with native_output_held():\n" + textwrap.indent(textwrap.dedent(body), "    ")
    code += "print('after', file=sys.stderr)\n"
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=60
    )
    return result.stdout, result.stderr, result.returncode


def test_held_output_is_dropped_when_the_block_succeeds():
    stdout, stderr, code = run_held('os.write(2, b"I0000 cudart_stub.cc:31] no cuda\\n")\n')
    assert (stdout, stderr, code) == ("", "after\n", 0)


def test_held_output_reaches_the_terminal_when_the_block_fails():
    stdout, stderr, code = run_held(
        """
        os.write(2, b"E0000 libcudart.so: cannot open, token=SECRET\\n")
        raise ImportError("TensorFlow failed to load")
        """
    )
    assert code == 1
    assert stderr.startswith("E0000 libcudart.so: cannot open, token=***\n")
    assert "ImportError: TensorFlow failed to load" in stderr and "after" not in stderr


def test_held_output_reaches_the_terminal_when_the_process_dies():
    stdout, stderr, code = run_held(
        """
        os.write(2, b"F0000 check failed: shape mismatch\\n")
        os.abort()
        """
    )
    assert code < 0
    assert stderr == "F0000 check failed: shape mismatch\n"
