"""make screenshots: real QGIS screenshots for the README, from `make demo`'s outputs.

Starts a real QGIS desktop under Xvfb with a throw-away profile that has the plugin installed and enabled,
and lets scripts/screenshot_scenes.py arrange each scene and grab the screen into docs/images/.
"""
import os
import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DEMO = Path(os.environ.get("LANDCOVER_DEMO", REPO / "demo_output"))  # or another run's outputs
SHOTS = REPO / "docs" / "images"


def main() -> int:
    if not (DEMO / "zion" / "accuracy_report.html").exists():
        sys.exit("Run 'make demo' first: the screenshots show its outputs.")
    home = DEMO / "qgis_desktop_home"
    if home.exists():
        shutil.rmtree(home)
    profile = home / ".local/share/QGIS/QGIS3/profiles/default"
    subprocess.run([sys.executable, str(REPO / "scripts" / "package_plugin.py"), "--dest",
                    str(profile / "python" / "plugins")], check=True, stdout=subprocess.DEVNULL)
    (profile / "QGIS").mkdir(parents=True)
    (profile / "QGIS" / "QGIS3.ini").write_text(
        "[PythonPlugins]\nlandcover_plugin=true\nprocessing=true\n"
        "[qgis]\ncheckVersion=false\nshowTips=false\n", encoding="utf-8")
    env = dict(os.environ, HOME=str(home), LANDCOVER_DEMO=str(DEMO), LANDCOVER_SHOTS=str(SHOTS))
    for name in ("PYTHONPATH", "QT_QPA_PLATFORM", "QGIS_CUSTOM_CONFIG_PATH", "QGIS_OPTIONS_PATH"):
        env.pop(name, None)
    env.setdefault("LANDCOVER_PYTHON", str(REPO / ".venv" / "bin" / "python"))
    command = ["xvfb-run", "-a", "-s", "-screen 0 1600x1000x24", "qgis", "--nologo", "--noversioncheck",
               "--code", str(REPO / "scripts" / "screenshot_scenes.py")]
    completed = subprocess.run(command, env=env, timeout=600)
    shots = sorted(SHOTS.glob("*.png"))
    print("\n".join(str(s) for s in shots))
    return completed.returncode


if __name__ == "__main__":
    sys.exit(main())
