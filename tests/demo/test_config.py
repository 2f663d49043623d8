"""The presets' mixtures are valid mixtures of their own tasks."""

import pytest
import yaml

from kibble.demo.config import PRESETS, DemoPaths
from kibble.demo.training_stage import mixture_text
from kibble.trainer.config import parse_mixture


@pytest.mark.parametrize("preset", sorted(PRESETS))
def test_a_presets_mixture_parses_and_weighs_only_its_own_tasks(preset, tmp_path):
    cfg = PRESETS[preset](tmp_path)
    mixture = parse_mixture(yaml.safe_load(mixture_text(cfg, DemoPaths(cfg.out))), preset)
    assert set(mixture.task_weights) <= {t.task for t in cfg.tasks}
    assert mixture.task_weights == cfg.task_weights
    assert mixture.sampling == cfg.sampling and mixture.steps == cfg.train_steps


def test_the_default_preset_weighs_its_random_expert_task_down(tmp_path):
    cfg = PRESETS["default"](tmp_path)
    random_tasks = [t.task for t in cfg.tasks if t.expert == "random"]
    assert random_tasks and all(cfg.task_weights.get(t, 1.0) < 1.0 for t in random_tasks)


def test_the_default_preset_plays_meta_world_on_the_present_observation(tmp_path):
    cfg = PRESETS["default"](tmp_path)
    past = {t.task: t.eval_past_steps for t in cfg.tasks}
    assert past["metaworld/drawer-open-v3"] == past["metaworld/reach-v3"] == 0
    assert past["gym/CartPole-v1"] is None  # CartPole scored higher with its history
