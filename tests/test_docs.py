"""The Python examples of README.md and docs/*.md run as written, each in a fresh interpreter (as a user would
paste it), and every relative link of the README points at a file that exists."""
import pathlib
import re
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent
PAGES = [ROOT / "README.md"] + sorted((ROOT / "docs").glob("*.md"))
BLOCKS = [
    (page.relative_to(ROOT).as_posix(), i, code)
    for page in PAGES
    for i, code in enumerate(re.findall(r"```python\n(.*?)```", page.read_text(), flags=re.S))
]


def test_readme_has_an_example_and_links_that_exist():
    readme = (ROOT / "README.md").read_text()
    assert re.search(r"```python\n", readme)
    prose = re.sub(r"```.*?```", "", readme, flags=re.S)  # links inside code blocks are program output
    links = re.findall(r"\]\(((?!https?://)[^)#]+)\)", prose)
    assert links, "the README links to the docs"
    missing = [link for link in links if not (ROOT / link).exists()]
    assert not missing, f"README links to files that do not exist: {missing}"


@pytest.mark.parametrize("page,i,code", BLOCKS, ids=[f"{p}-{i}" for p, i, _ in BLOCKS])
def test_python_block_runs(page, i, code, tmp_path):
    script = tmp_path / f"block_{i}.py"
    script.write_text(code)
    run = subprocess.run([sys.executable, str(script)], cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, f"{page} python block {i} failed:\n{code}\n--- stderr ---\n{run.stderr[-3000:]}"
