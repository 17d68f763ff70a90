"""evograd.zo is reachable as `evograd.zo` and importing the package itself loads no torch (its modules do)."""
import subprocess
import sys


def test_zo_is_a_lazy_submodule_without_torch():
    code = ("import sys, evograd; m = evograd.zo; assert m.__name__ == 'evograd.zo', m; "
            "assert 'torch' not in sys.modules, 'evograd.zo imported torch'")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_every_lazy_name_resolves():
    import evograd.zo as zo

    for name in zo._LAZY:
        assert getattr(zo, name).__name__ == name, name
