"""The built wheel holds every subpackage of escnn_tensor (packages are found automatically) and the C sources of its
native kernels, and nothing that belongs outside it (examples, tests); its metadata holds the BSD-3-Clause LICENSE
that pyproject.toml names."""
import pathlib
import subprocess
import sys
import zipfile

ROOT = pathlib.Path(__file__).resolve().parent.parent


def test_wheel_holds_every_subpackage(tmp_path):
    run = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(tmp_path),
         str(ROOT)],
        capture_output=True, text=True, timeout=300,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    (wheel,) = tmp_path.glob("escnn_tensor-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    sources = sorted(p.relative_to(ROOT).as_posix() for p in (ROOT / "escnn_tensor").rglob("*.py"))
    assert len(sources) > 10
    missing = [s for s in sources if s not in names]
    assert not missing, f"not in the wheel: {missing}"
    csrc = sorted(p.relative_to(ROOT).as_posix() for p in (ROOT / "escnn_tensor").rglob("csrc/*") if p.is_file())
    assert any(c.endswith(".c") for c in csrc) and any(c.endswith(".h") for c in csrc)
    assert not [c for c in csrc if c not in names], "the native kernels' C sources are not in the wheel"
    packages = {p.parent.relative_to(ROOT).as_posix() for p in (ROOT / "escnn_tensor").rglob("__init__.py")}
    assert {"escnn_tensor", "escnn_tensor/nn", "escnn_tensor/image", "escnn_tensor/data"} <= packages
    assert not any(n.startswith(("tests/", "examples/")) for n in names)
    licences = [n for n in names if n.endswith("/LICENSE") and ".dist-info/" in n]
    assert licences, f"no LICENSE in the wheel's metadata: {sorted(n for n in names if '.dist-info/' in n)}"
    assert b"BSD 3-Clause" in zipfile.ZipFile(wheel).read(licences[0])
