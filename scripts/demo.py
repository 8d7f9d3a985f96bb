"""`make demo`: run the training -> serving example DAG on an embedded Airflow and show the result;
`make ui` (``--ui``): browse the same Airflow home in the web UI.

Uses SQLite and AIRFLOW_HOME=./airflow_home (git-ignored); models land under
./airflow_home/savedmodel-demo unless SAVEDMODEL_* variables point elsewhere. The UI is what
``airflow standalone`` runs, started by demo_ui.py so that every socket is on 127.0.0.1 and a
SIGTERM stops every process: the example DAGs of this project only, on 127.0.0.1:8080 unless
AIRFLOW__API__HOST / AIRFLOW__API__PORT say otherwise.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
DAG_ID = "example_savedmodel_training_to_serving"


def message_of(line: str) -> str:
    """The message of a task log line, without structlog's timestamp, level, logger and source."""
    match = re.match(r"^\S+ \[\w+\s*\] (.*?)(?: \[[\w.]+\])?(?: loc=\S+)?$", line.strip())
    return match.group(1) if match else line.strip()


def demo_env() -> tuple[Path, dict[str, str]]:
    """The Airflow home and the environment both `make demo` and `make ui` run Airflow with."""
    home = Path(os.environ.get("AIRFLOW_HOME", ROOT / "airflow_home")).resolve()
    home.mkdir(parents=True, exist_ok=True)
    env = {
        **os.environ,
        "PATH": os.pathsep.join([str(BIN), os.environ.get("PATH", "")]),
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__CORE__DAGS_FOLDER": str(ROOT / "dags"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "SAVEDMODEL_DEMO_ROOT": os.environ.get("SAVEDMODEL_DEMO_ROOT", str(home / "savedmodel-demo")),
        "TF_CPP_MIN_LOG_LEVEL": "3",
    }
    env.setdefault("AIRFLOW__API__HOST", "127.0.0.1")
    env.setdefault("AIRFLOW__API__PORT", "8080")
    # Tasks reach the API server here; Airflow's default names port 8080 whatever the port is.
    env.setdefault(
        "AIRFLOW__CORE__EXECUTION_API_SERVER_URL",
        f"http://{env['AIRFLOW__API__HOST']}:{env['AIRFLOW__API__PORT']}/execution/",
    )
    env.setdefault("AIRFLOW__CORE__TEST_CONNECTION", "Enabled")  # the connection list's Test button
    return home, env


def ui_command(home: Path) -> str:
    """The `make ui` line that browses ``home`` with this virtualenv (defaults left out)."""
    words = [] if home == (ROOT / "airflow_home").resolve() else [f"AIRFLOW_HOME={home}"]
    words += ["make", "ui"]
    if BIN.parent.resolve() != (ROOT / ".venv-demo").resolve():
        words.append(f"DEMO_VENV={BIN.parent}")
    return " ".join(words)


def ui() -> int:
    """Airflow's four services on the demo's home and DAGs, until Ctrl-C or SIGTERM (demo_ui.py)."""
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    import demo_ui

    home, env = demo_env()
    print(
        f"==> Airflow UI for {home} at http://{env['AIRFLOW__API__HOST']}:{env['AIRFLOW__API__PORT']}\n"
        f"    log in as 'admin' with the password in "
        f"{home / 'simple_auth_manager_passwords.json.generated'} (printed below the first time); "
        f"Ctrl-C stops it",
        flush=True,
    )
    return demo_ui.run(BIN / "airflow", home, env)


def main() -> int:
    if sys.argv[1:] == ["--ui"]:
        return ui()
    home, env = demo_env()
    print(f"==> Airflow home: {home}", flush=True)
    subprocess.run([str(BIN / "airflow"), "db", "migrate"], env=env, check=True, stdout=subprocess.DEVNULL)
    print(f"==> airflow dags test {DAG_ID}", flush=True)
    log = home / "demo-dag-test.log"
    with log.open("w") as out:
        run = subprocess.run(
            [str(BIN / "airflow"), "dags", "test", DAG_ID], env=env, stdout=out, stderr=subprocess.STDOUT
        )
    text = log.read_text()
    for line in text.splitlines():
        if "training accuracy" in line or " serves " in line:
            print("   " + message_of(line))
        elif "[DAG TEST] end task" in line:
            print("   task done: " + line.split("task_id=", 1)[1].split()[0])
        elif "DagRun Finished" in line:
            print("   DAG run finished: " + line.split("state=", 1)[1].split(",")[0])
    if run.returncode != 0 or "state=success" not in text:
        print(f"!!! the DAG run failed; full log: {log}", file=sys.stderr)
        return 1
    sys.path.insert(0, str(ROOT / "dags"))
    os.environ.update(env)
    from savedmodel_demo_settings import SERVING_BASE, SERVING_CONFIG

    print(f"\n==> versions under {SERVING_BASE}", flush=True)
    subprocess.run([str(BIN / "savedmodel"), "versions", SERVING_BASE], env=env, check=True)
    print(f"\n==> what TensorFlow Serving loads: savedmodel serving show {SERVING_CONFIG}", flush=True)
    subprocess.run([str(BIN / "savedmodel"), "serving", "show", SERVING_CONFIG], env=env, check=True)
    from airflow_savedmodel.storage import list_versions

    newest = max(list_versions(SERVING_BASE), key=lambda v: v.version)
    print(f"\n==> savedmodel inspect {newest.url}", flush=True)
    subprocess.run(
        [str(BIN / "savedmodel"), "inspect", newest.url, "--tag-set", "serve"], env=env, check=True
    )
    passwords = home / "simple_auth_manager_passwords.json.generated"
    print(
        f"\nDone. Full DAG log: {log}\n"
        f"Browse it in the UI:\n"
        f"  {ui_command(home)}\n"
        f"  then open http://localhost:8080 and log in as 'admin' with the password in {passwords}\n"
        f"  (make ui also prints it the first time it starts)."
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
