"""The paper's studies as functions that return tables: :func:`study_model` for one model,
:func:`reproduce` for the whole study of Ancona et al. (ICLR 2018) on the available data."""

from gradattr.experiments.claims import Claim, paper_claims
from gradattr.experiments.recipes import DATASET_KEYS, DATASETS, MODEL_KEYS
from gradattr.experiments.reproduce import ReproduceOptions, StudyConfigError, reproduce, select
from gradattr.experiments.results import Study
from gradattr.experiments.study import Features, ModelStudy, StudySettings, Subject, study_model

__all__ = [
    "DATASETS",
    "DATASET_KEYS",
    "MODEL_KEYS",
    "Claim",
    "Features",
    "ModelStudy",
    "ReproduceOptions",
    "Study",
    "StudyConfigError",
    "StudySettings",
    "Subject",
    "paper_claims",
    "reproduce",
    "select",
    "study_model",
]
