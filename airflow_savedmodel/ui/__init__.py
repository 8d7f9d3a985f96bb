"""The Models view: the provider's pages inside Airflow's UI (a FastAPI app the plugin mounts on
the API server). Which models Airflow knows (``known``), which of them a user may see
(``access``), the bake's plots (``plots``) and the pages and their JSON (``pages``). Reads
storage through the registry (release/registry.py); never writes.
"""
