"""Generated protobuf modules for the SavedModel formats (sources in protos/; `make protos`).

The proto package is ``airflow_savedmodel.tf``, not ``tensorflow``, so these modules and
TensorFlow's own can live in one process; the wire format is TensorFlow's.
"""
