"""``python -m core generate`` with sizes nothing could hold, under an address-space limit of 3 GB: each ends in
one line and exit code 2 before any big allocation (never a MemoryError, a traceback or the machine's
out-of-memory killer), and the memory check honours the limit."""
import json
import resource
import subprocess
import sys

import pytest

from paths import GOLDEN, ROOT

LIMIT = 3 * 2**30
BASE = ["generate", "--backbone", str(GOLDEN / "wan_tiny_t2v_bare.safetensors"), "--num-heads", "2",
        "--embeds", str(GOLDEN / "inputs.safetensors"), "--device", "cpu"]
CASES = {
    "frames": ["--frames", "30000000"],
    "latent size": ["--frames", "48", "--latent-size", "60000x104000"],
    "window": ["--frames", "48", "--local-attn-size", "10000000"],
    "seconds": ["--seconds", "1e12"],
    "sampling steps": ["--frames", "48", "--sampling-steps", "2000000000"],
    "memory": ["--frames", "1200", "--latent-size", "128x128"],     # 3.5 GiB of latents: fits the machine, not the limit
}
SCRIPT = """
import contextlib, io, json, sys
from core.app import cli
out = {}
for name, argv in json.loads(sys.argv[1]).items():
    err = io.StringIO()
    try:
        with contextlib.redirect_stderr(err):
            rc = cli.main(argv)
    except SystemExit as exc:
        rc = exc.code
    except BaseException as exc:
        rc, err = -1, io.StringIO(type(exc).__name__ + ": " + str(exc))
    out[name] = [rc, err.getvalue()]
print(json.dumps(out))
"""


def _limit_memory():
    resource.setrlimit(resource.RLIMIT_AS, (LIMIT, LIMIT))


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    out = tmp_path_factory.mktemp("sizes") / "out.safetensors"
    cases = {name: [*BASE, *args, "--out", str(out)] for name, args in CASES.items()}
    proc = subprocess.run([sys.executable, "-c", SCRIPT, json.dumps(cases)], cwd=ROOT, capture_output=True,
                          text=True, preexec_fn=_limit_memory, timeout=600)
    assert proc.returncode == 0, proc.stderr
    assert not out.exists()
    return json.loads(proc.stdout.splitlines()[-1])


@pytest.mark.parametrize("case, words", [
    ("frames", "30000000 latent frames are"), ("latent size", "latent size 60000x104000 is"),
    ("window", "window (local_attn_size) 10000000"), ("seconds", "length 1e+12 s"),
    ("sampling steps", "sampling steps: 2000000000 steps per block"),
    ("memory", "of RAM (the video's latents ×3"),
])
def test_an_impossible_size_ends_in_one_line_under_a_memory_limit(results, case, words):
    rc, stderr = results[case]
    assert rc == 2 and stderr.count("\n") == 1 and stderr.startswith("error: "), stderr
    assert words in stderr and "Error" not in stderr and "Traceback" not in stderr
