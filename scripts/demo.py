"""`make demo`: run the training -> serving example DAG on an embedded Airflow and show the result.

Uses SQLite and AIRFLOW_HOME=./airflow_home (git-ignored); models land under
./airflow_home/savedmodel-demo unless SAVEDMODEL_* variables point elsewhere.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
DAG_ID = "example_savedmodel_training_to_serving"


def main() -> int:
    home = Path(os.environ.get("AIRFLOW_HOME", ROOT / "airflow_home")).resolve()
    home.mkdir(parents=True, exist_ok=True)
    env = {
        **os.environ,
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__CORE__DAGS_FOLDER": str(ROOT / "dags"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "SAVEDMODEL_DEMO_ROOT": os.environ.get("SAVEDMODEL_DEMO_ROOT", str(home / "savedmodel-demo")),
        "TF_CPP_MIN_LOG_LEVEL": "3",
    }
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
            print("   " + line.strip())
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
        f"  AIRFLOW_HOME={home} AIRFLOW__CORE__DAGS_FOLDER={ROOT / 'dags'} {BIN / 'airflow'} standalone\n"
        f"  then open http://localhost:8080 and log in as 'admin' with the password standalone prints\n"
        f"  (kept in {passwords})."
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
