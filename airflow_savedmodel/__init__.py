"""Apache Airflow provider for TensorFlow SavedModels.

The package is layered: ``format`` reads and writes SavedModels (protobuf and numpy only),
``storage`` moves them between fsspec filesystems, and the Airflow layer (hooks, operators,
sensors, triggers) stays a thin wrapper over both. Importing this package imports neither
Airflow nor TensorFlow.
"""

from __future__ import annotations

__version__ = "0.1.0"
