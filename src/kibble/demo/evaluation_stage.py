"""Stage 5: play the trained generalist on every task it trained on; scores from the cards.

Stored scores are reused when :func:`kibble.trainer.evaluate.current_scores` says they
played these tasks, episodes and seeds on the run's last checkpoint.
"""

from __future__ import annotations

import time
import warnings

from kibble.demo.config import DemoConfig, DemoPaths
from kibble.demo.stage import StageResult, fmt, set_torch_threads
from kibble.display import Display, on_episode


def evaluate_generalist(cfg: DemoConfig, paths: DemoPaths, display: Display) -> StageResult:
    """Play the trained generalist on every task it trained on; scores from the cards."""
    from kibble.experts.evaluation import RolloutSettings
    from kibble.trainer.evaluate import (
        EvalRequest,
        LoadedRun,
        current_scores,
        evaluate_task,
        write_report,
    )
    from kibble.trainer.summary import trained_tasks

    started = time.monotonic()
    trained = set(trained_tasks(paths.run))
    tasks = [t for t in cfg.tasks if t.task in trained]
    skipped = [t.task for t in cfg.tasks if t.task not in trained]
    wanted = [
        EvalRequest(
            task=t.task,
            episodes=t.eval_episodes,
            seed=cfg.eval_seed,
            max_steps=t.max_steps,
            past_steps=t.eval_past_steps,
        )
        for t in tasks
    ]
    rows = None if cfg.fresh else current_scores(paths.run, wanted)
    reused = rows is not None
    if rows is None:
        set_torch_threads(cfg.threads)
        run = LoadedRun.load(paths.run)
        rows = []
        for t in tasks:
            settings = RolloutSettings(
                episodes=t.eval_episodes,
                seed=cfg.eval_seed,
                max_steps=t.max_steps,  # as the card and the dataset were cut
                num_envs=t.eval_episodes,  # all episodes in lockstep: one batch
            )
            with display.bar(f"eval {t.task}", t.eval_episodes) as update:
                rows.append(
                    evaluate_task(
                        run,
                        t.task,
                        settings,
                        card=paths.card(t.task),
                        on_episode=on_episode(update),
                        past_steps=t.eval_past_steps,
                    )
                )
        with warnings.catch_warnings():  # a family of random-expert tasks has no mean score
            warnings.simplefilter("ignore", RuntimeWarning)
            write_report(paths.run, rows)
    random_experts = {t.task for t in cfg.tasks if t.expert == "random"}
    details = [r.line(expert_is_random=r.task in random_experts) for r in rows]
    details += [f"{task}: no kept episodes, so not trained on nor evaluated" for task in skipped]
    scored = [r.score for r in rows if r.has_score]
    summary = (
        f"{'reused' if reused else 'evaluated'} {len(rows)} tasks; "
        f"mean expert-normalized score {fmt(sum(scored) / len(scored)) if scored else 'n/a'}% "
        f"over the {len(scored)} with a non-random expert"
    )
    if cfg.preset == "short":
        summary += " (a smoke test: tiny sizes, the scores mean nothing)"
    seconds = time.monotonic() - started
    return StageResult(
        stage="eval", reused=reused, seconds=seconds, summary=summary, details=details
    )
