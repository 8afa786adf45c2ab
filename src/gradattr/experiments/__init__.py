"""The paper's studies as functions that return tables: :func:`study_model` for one model,
:func:`reproduce` for the whole study of Ancona et al. (ICLR 2018) on the available data, and
:func:`run_robustness` for the standard-vs-robust comparison of Nielsen et al. (IEEE SPM 2022)."""

from gradattr.experiments.claims import Claim, paper_claims
from gradattr.experiments.recipes import DATASET_KEYS, DATASETS, MODEL_KEYS
from gradattr.experiments.reproduce import ReproduceOptions, StudyConfigError, reproduce, select
from gradattr.experiments.results import Study
from gradattr.experiments.robustness_study import RobustnessSettings, RobustnessStudy, run_robustness
from gradattr.experiments.study import Features, ModelStudy, StudySettings, Subject, study_model

__all__ = [
    "DATASETS",
    "DATASET_KEYS",
    "MODEL_KEYS",
    "Claim",
    "Features",
    "ModelStudy",
    "ReproduceOptions",
    "RobustnessSettings",
    "RobustnessStudy",
    "Study",
    "StudyConfigError",
    "StudySettings",
    "Subject",
    "paper_claims",
    "reproduce",
    "run_robustness",
    "select",
    "study_model",
]
