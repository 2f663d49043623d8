"""Stage 2: an expert card per task (the expert's and the random policy's returns).

A card is reused when :func:`kibble.experts.card.current_card` says it measured this
expert with these settings and the expert has not changed since.
"""

from __future__ import annotations

import time

from kibble.demo.config import DemoConfig, DemoPaths, DemoTask, expert_source
from kibble.demo.stage import StageResult
from kibble.display import Display, on_episode


def make_cards(cfg: DemoConfig, paths: DemoPaths, display: Display) -> StageResult:
    """An expert card per task: the expert's and the random policy's returns."""
    from kibble.experts.card import RolloutSettings, current_card, make_card, write_card
    from kibble.experts.sources import parse_source

    started = time.monotonic()
    details, made = [], 0
    for t in cfg.tasks:
        path, source = paths.card(t.task), expert_source(paths, t)
        settings = RolloutSettings(
            episodes=t.card_episodes, seed=cfg.seed, num_envs=cfg.num_envs, max_steps=t.max_steps
        )
        card = None
        if not cfg.fresh:
            card = current_card(path, t.task, source, settings)
        reused = card is not None
        if card is None:
            is_random = parse_source(source).is_random
            label = "random" if is_random else f"{t.expert} and random"
            runs = 1 if is_random else 2
            with display.bar(f"card {t.task} ({label})", runs * t.card_episodes) as update:
                card = make_card(t.task, source, settings, on_episode=on_episode(update))
            write_card(card, path)
            made += 1
        details.append(card_line(card, t, reused))
    seconds = time.monotonic() - started
    if made == 0:
        details = [line.removesuffix(" [reused]") for line in details]
        summary = f"reused {len(details)} cards"
        return StageResult(
            stage="cards", reused=True, seconds=seconds, summary=summary, details=details
        )
    where = paths.card(cfg.tasks[0].task).parent
    summary = f"wrote {made} expert card(s) to {where}" + (
        f", reused {len(details) - made}" if made < len(details) else ""
    )
    return StageResult(
        stage="cards", reused=False, seconds=seconds, summary=summary, details=details
    )


def card_line(card, t: DemoTask, reused: bool) -> str:
    """``task (expert): return 9.5 ± 0.5; random 17.5 (N=2)``."""
    success = "" if card.success_rate is None else f", success {card.success_rate:.2f}"
    cut = f", episodes cut at {t.max_steps} steps" if t.max_steps else ""
    return (
        f"{t.task} ({t.expert}): return {card.expert_return.mean:.1f} ± "
        f"{card.expert_return.std:.1f}{success}; random {card.random_return.mean:.1f} "
        f"(N={card.episodes}{cut}){' [reused]' if reused else ''}"
    )
