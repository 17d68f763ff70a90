"""evograd.zo is reachable as `evograd.zo` and importing the package itself loads no torch (its modules do)."""
import subprocess
import sys


def test_zo_is_a_lazy_submodule_without_torch():
    code = ("import sys, evograd; m = evograd.zo; assert m.__name__ == 'evograd.zo', m; "
            "assert 'torch' not in sys.modules, 'evograd.zo imported torch'")
    subprocess.run([sys.executable, "-c", code], check=True)
