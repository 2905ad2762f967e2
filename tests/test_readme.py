"""The README's Python examples run as written, each in a fresh interpreter (as a user would paste it)."""
import pathlib
import re
import subprocess
import sys

import pytest

README = pathlib.Path(__file__).resolve().parent.parent / "README.md"
BLOCKS = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)


def test_readme_has_examples():
    assert len(BLOCKS) >= 4


@pytest.mark.parametrize("i", range(len(BLOCKS)))
def test_readme_block_runs(i, tmp_path):
    script = tmp_path / f"readme_block_{i}.py"
    script.write_text(BLOCKS[i])
    run = subprocess.run([sys.executable, str(script)], cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, f"README python block {i} failed:\n{BLOCKS[i]}\n--- stderr ---\n{run.stderr[-3000:]}"
