"""Imports every module that registers something: backbones, models, tasks and experiments.

Import this module (as `train.py` does) before looking anything up in Model Garden's factories.
"""
# pylint: disable=unused-import
from official.vision import registry_imports as _vision_registry_imports

from official_cvrl.configs import cvrl as _pretrain_configs
from official_cvrl.configs import video_classification as _evaluation_configs
from official_cvrl.modeling import factory as _model_builders
from official_cvrl.modeling.backbones import r3d as _r3d_backbone
from official_cvrl.tasks import pretrain as _pretrain_task
from official_cvrl.tasks import video_classification as _evaluation_tasks
from official_cvrl.configs import action_detection as _action_detection_configs
from official_cvrl.modeling import action_detection_model as _action_detection_model
from official_cvrl.tasks import action_detection as _action_detection_task
