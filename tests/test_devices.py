"""A TensorFlow job runs on the threads it declared."""

import json
import subprocess
import sys
import textwrap

from conftest import REPO

# Thread settings are process-wide and fixed once TensorFlow runs, hence a fresh Python.
CONFIGURE = textwrap.dedent(
    """
    import json, sys
    import tensorflow as tf
    from smallcnn import devices

    threads = json.loads(sys.argv[1])
    runtime = devices.configure("float32", multi_gpu=False, threads=threads)
    tf.linalg.matmul(tf.ones((64, 64)), tf.ones((64, 64)))  # after TensorFlow has run an op
    print(json.dumps({
        "runtime": [runtime.intra_op_threads, runtime.inter_op_threads],
        "tensorflow": [
            tf.config.threading.get_intra_op_parallelism_threads(),
            tf.config.threading.get_inter_op_parallelism_threads(),
        ],
    }))
    """
)


def configured(threads):
    result = subprocess.run(
        [sys.executable, "-c", CONFIGURE, json.dumps(threads)],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout.splitlines()[-1])


def test_configure_sets_and_reports_the_jobs_threads():
    assert configured(1) == {"runtime": [1, 1], "tensorflow": [1, 1]}


def test_without_threads_tensorflow_keeps_its_default():
    # 0: one thread per core TensorFlow sees, which is what the job's threads replace.
    assert configured(None) == {"runtime": [0, 0], "tensorflow": [0, 0]}
