"""The provider's operators, importable from here as before the split by what they act on:
one model (operators/model.py), a base path's versions (operators/versions.py), what TF
Serving serves (operators/serving.py).
"""

from __future__ import annotations

from airflow_savedmodel.operators._common import ProgressLog, _version_numbers
from airflow_savedmodel.operators.model import (
    SavedModelCopyOperator,
    SavedModelStripDefaultAttrsOperator,
    SavedModelValidateOperator,
)
from airflow_savedmodel.operators.serving import (
    SavedModelRolloutDecisionOperator,
    SavedModelRolloutOperator,
    SavedModelServingLabelOperator,
)
from airflow_savedmodel.operators.versions import (
    SavedModelExportOperator,
    SavedModelMirrorOperator,
    SavedModelPublishOperator,
    SavedModelRetentionOperator,
)

__all__ = [
    "ProgressLog",
    "SavedModelCopyOperator",
    "SavedModelExportOperator",
    "SavedModelMirrorOperator",
    "SavedModelPublishOperator",
    "SavedModelRetentionOperator",
    "SavedModelRolloutDecisionOperator",
    "SavedModelRolloutOperator",
    "SavedModelServingLabelOperator",
    "SavedModelStripDefaultAttrsOperator",
    "SavedModelValidateOperator",
    "_version_numbers",
]
